//! How the real binaries start: the embedded manifest and `--print-exports`, the check of a
//! manifest against the binary's own entries, app settings, and `--log-format json`.

mod common {
    pub mod process;
    pub mod temp_dir;
}

use std::process::{Command, Output, Stdio};

use serde_json::Value;

use common::process::repo_file;
use common::temp_dir::TempDir;

fn run(binary: &str, args: &[&str]) -> Output {
    Command::new(binary)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("run the worker")
}

const TEST_BINARY: &str = env!("CARGO_BIN_EXE_molt_worker_test");
const PRODUCTION_BINARY: &str = env!("CARGO_BIN_EXE_molt_worker");

/// A manifest file as `--print-exports` shows it: every option in effect, `idempotent`
/// (false by default) included.
fn manifest_file(name: &str) -> Value {
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_file(name)).unwrap()).unwrap();
    for options in manifest["entries"].as_object_mut().unwrap().values_mut() {
        let options = options.as_object_mut().unwrap();
        options.entry("idempotent").or_insert(Value::Bool(false));
    }
    manifest
}

fn written(dir: &TempDir, text: &str) -> String {
    std::fs::create_dir_all(dir.path()).unwrap();
    let path = dir.path().join("exports.json");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn print_exports_shows_the_embedded_manifest() {
    for (binary, file) in [
        (PRODUCTION_BINARY, "molt_exports.json"),
        (TEST_BINARY, "molt_exports.test.json"),
    ] {
        let output = run(binary, &["--print-exports"]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(printed, manifest_file(file), "{binary}");
    }
}

#[test]
fn the_production_binary_refuses_a_manifest_naming_test_entries() {
    let output = run(
        PRODUCTION_BINARY,
        &[
            "--print-exports",
            "--exports",
            repo_file("molt_exports.test.json").to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("exports manifest names unknown entry")
            && stderr.contains("known: echo, health, list_items, compute"),
        "{stderr}"
    );
}

#[test]
fn a_given_manifest_overrides_the_embedded_one() {
    let dir = TempDir::new("override-exports");
    let path = written(&dir, r#"{"entries": {"echo": {"max_concurrency": 3}}}"#);
    let output = run(TEST_BINARY, &["--print-exports", "--exports", &path]);
    assert!(output.status.success());
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        printed,
        serde_json::json!({"entries": {"echo": {"idempotent": false, "max_concurrency": 3}}})
    );
}

#[test]
fn a_settings_section_the_app_does_not_read_fails_start_up() {
    let dir = TempDir::new("unread-settings");
    let path = written(
        &dir,
        r#"{"entries": {"echo": {}}, "settings": {"databse": {}}}"#,
    );
    let output = run(TEST_BINARY, &["--stdio", "--exports", &path]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim().lines().last(),
        Some(
            r#"molt_worker: exports manifest: settings section "databse" is not used by this worker"#
        ),
        "{stderr}"
    );
}

#[test]
fn json_logs_are_one_object_a_line() {
    let output = run(TEST_BINARY, &["--stdio", "--log-format", "json"]);
    assert!(output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
        .collect();
    let ready = lines
        .iter()
        .find(|line| {
            line["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("ready:"))
        })
        .unwrap_or_else(|| panic!("no ready line in {stderr}"));
    assert_eq!(ready["level"], "INFO");
    assert!(ready["ts"].as_str().is_some_and(|ts| ts.ends_with('Z')));
}

#[test]
fn a_bad_log_format_is_a_usage_error() {
    let output = run(TEST_BINARY, &["--stdio", "--log-format", "xml"]);
    assert_eq!(output.status.code(), Some(2));
}
