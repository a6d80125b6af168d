//! The log format of the real binary is the operator's setting, not a choice made in code.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A served binary that is killed when the test ends, even when an assertion fails first.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `incident-vault serve` on a fresh SQLite database, without a terminal, and returns the
/// first line it writes to stdout (its log, in `serve`). `APP_TELEMETRY__FORMAT` is cleared and
/// the config folder and the local environment are pinned (`production.toml` says `json`), so
/// that only `format` decides.
fn first_log_line_of_serve(format: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let escrow = age::x25519::Identity::generate();
    let mut command = Command::new(env!("CARGO_BIN_EXE_incident-vault"));
    command
        .arg("serve")
        .current_dir(dir.path())
        .env(
            "APP_CONFIG_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
        )
        .env("APP_ENVIRONMENT", "local")
        .env(
            "APP_DATABASE__URL",
            format!(
                "sqlite://{}",
                dir.path().join("db").join("vault.db").display()
            ),
        )
        .env("APP_STORAGE__DATA_DIR", dir.path().join("data"))
        .env("APP_SERVER__BIND", "127.0.0.1:0")
        .env("APP_ESCROW__RECIPIENT", escrow.to_public().to_string())
        .env("APP_TELEMETRY__LEVEL", "info")
        .env_remove("APP_TELEMETRY__FORMAT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(format) = format {
        command.env("APP_TELEMETRY__FORMAT", format);
    }
    let mut served = Served(command.spawn().expect("the incident-vault binary runs"));
    let stdout = BufReader::new(served.0.stdout.take().unwrap());
    let stderr = BufReader::new(served.0.stderr.take().unwrap());
    // A reader thread, so that the wait for the first line is bounded; it ends when the child
    // is killed and its stdout closes.
    let (first_line, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Some(Ok(line)) = stdout.lines().next() {
            let _ = first_line.send(line);
        }
    });
    let line = received.recv_timeout(Duration::from_secs(60));
    drop(served);
    line.unwrap_or_else(|_| {
        let stderr: Vec<String> = stderr.lines().map_while(Result::ok).collect();
        panic!("serve wrote no log line within 60 s; stderr: {stderr:?}")
    })
}

/// A log shipper needs JSON and a person at a terminal does not: the setting must reach the
/// binary's subscriber, whose default (`base.toml`) is the human-readable format.
#[test]
fn serve_logs_json_lines_when_the_format_setting_says_json_and_plain_text_otherwise() {
    let json = first_log_line_of_serve(Some("json"));
    let plain = first_log_line_of_serve(None);

    let parsed: Value =
        serde_json::from_str(&json).unwrap_or_else(|error| panic!("not JSON ({error}): {json}"));
    assert!(parsed["level"].is_string(), "{json}");
    assert!(parsed["fields"]["message"].is_string(), "{json}");
    assert!(
        serde_json::from_str::<Value>(&plain).is_err(),
        "the default format is JSON: {plain}"
    );
    assert!(plain.contains("INFO"), "not a log line: {plain}");
}
