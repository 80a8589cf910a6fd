//! `skein check` as an operator runs it: the real binary against real host state, with the
//! data dir in a temp dir. Expects what the broker tests need anyway (io_uring allowed,
//! O_DIRECT on the temp dir's filesystem).

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Command, Output};

use tempfile::TempDir;

/// Every check, in the order the binary prints them.
const CHECK_NAMES: [&str; 10] = [
    "config",
    "io_uring",
    "memlock",
    "data_dir",
    "o_direct",
    "disk_space",
    "cores",
    "isolation",
    "ports",
    "clock",
];

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// A node config with its data in `dir` and the three listeners on the given ports.
fn write_config(dir: &Path, shards: &str, kafka_port: u16) -> std::path::PathBuf {
    let path = dir.join("skein.toml");
    let text = format!(
        "[node]\ndata_dir = \"{}\"\n[cores]\nshards = \"{shards}\"\n[listeners]\n\
         kafka = \"127.0.0.1:{kafka_port}\"\ninternal = \"127.0.0.1:{}\"\n\
         metrics = \"127.0.0.1:{}\"\n",
        dir.join("data").display(),
        free_port(),
        free_port()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn skein_check(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skein"))
        .arg("check")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run skein check")
}

/// The JSON document, and each check's status by name (in order).
fn parse(output: &Output) -> (serde_json::Value, Vec<(String, String)>) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let doc: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\nstderr: {:?}", output.stderr));
    let checks = doc["checks"]
        .as_array()
        .expect("checks array")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().expect("name").to_string(),
                c["status"].as_str().expect("status").to_string(),
            )
        })
        .collect();
    (doc, checks)
}

fn status_of<'a>(checks: &'a [(String, String)], name: &str) -> &'a str {
    checks
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, s)| s.as_str())
        .unwrap_or_else(|| panic!("no check named {name}: {checks:?}"))
}

#[test]
fn a_good_config_passes_and_names_every_check() {
    let dir = TempDir::new().expect("temp dir");
    let config = write_config(dir.path(), "0", free_port());
    let out = skein_check(
        dir.path(),
        &["--config", config.to_str().expect("utf-8"), "--json"],
    );
    let (doc, checks) = parse(&out);
    let names: Vec<&str> = checks.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, CHECK_NAMES, "{doc:#}");
    for (name, status) in &checks {
        assert_ne!(status, "fail", "{name} failed: {doc:#}");
        assert!(["ok", "warn"].contains(&status.as_str()), "{status}");
    }
    assert_eq!(doc["passed"], true);
    assert_eq!(out.status.code(), Some(0), "{doc:#}");
    assert!(dir.path().join("data").is_dir(), "data_dir is created");
    // The probes leave nothing behind in it.
    let left: Vec<_> = std::fs::read_dir(dir.path().join("data"))
        .expect("read data dir")
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // The same verdicts as text: one line per check, then the summary.
    let out = skein_check(dir.path(), &["--config", config.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), CHECK_NAMES.len() + 1, "{text}");
    for (line, name) in lines.iter().zip(CHECK_NAMES) {
        let mut words = line.split_whitespace();
        assert!(
            ["OK", "WARN"].contains(&words.next().unwrap_or("")),
            "{line}"
        );
        assert_eq!(words.next(), Some(name), "{line}");
    }
    assert!(lines[CHECK_NAMES.len()].starts_with("passed:"), "{text}");
}

#[test]
fn the_embedded_default_is_checked_in_the_working_directory() {
    let dir = TempDir::new().expect("temp dir");
    let out = skein_check(dir.path(), &["--json"]);
    let (doc, checks) = parse(&out);
    let names: Vec<&str> = checks.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, CHECK_NAMES, "{doc:#}");
    assert_eq!(doc["config"], "embedded default");
    assert!(dir.path().join("skein-data").is_dir());
    // 127.0.0.1:9092 may be taken by another test's broker: only the exit status must agree.
    let failed = checks.iter().any(|(_, s)| s == "fail");
    assert_eq!(out.status.code(), Some(i32::from(failed)), "{doc:#}");
    assert_eq!(doc["passed"], !failed);
}

#[test]
fn a_taken_kafka_port_fails() {
    let dir = TempDir::new().expect("temp dir");
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = taken.local_addr().expect("local_addr").port();
    let config = write_config(dir.path(), "0", port);
    let out = skein_check(
        dir.path(),
        &["--config", config.to_str().expect("utf-8"), "--json"],
    );
    let (doc, checks) = parse(&out);
    assert_eq!(status_of(&checks, "ports"), "fail", "{doc:#}");
    let ports = &doc["checks"][8];
    assert_eq!(ports["name"], "ports");
    let detail = ports["detail"].as_str().expect("detail");
    assert!(
        detail.contains(&format!("kafka 127.0.0.1:{port}")),
        "{detail}"
    );
    let remedy = ports["remedy"].as_str().expect("remedy");
    assert!(remedy.contains("broker already running"), "{remedy}");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(doc["passed"], false);
    drop(taken);
}

#[test]
fn a_core_that_does_not_exist_fails() {
    let dir = TempDir::new().expect("temp dir");
    let config = write_config(dir.path(), "0,4095", free_port());
    let out = skein_check(dir.path(), &["--config", config.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let cores = text
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("cores"))
        .unwrap_or_else(|| panic!("no cores line: {text}"));
    assert!(cores.starts_with("FAIL"), "{cores}");
    assert!(cores.contains("4095"), "{cores}");
    assert!(cores.contains("fix: "), "{cores}");
}

#[test]
fn a_broken_config_fails_and_names_the_key() {
    let dir = TempDir::new().expect("temp dir");
    let config = dir.path().join("skein.toml");
    std::fs::write(&config, "[cores]\nshard = \"0\"\n").expect("write config");
    let out = skein_check(
        dir.path(),
        &["--config", config.to_str().expect("utf-8"), "--json"],
    );
    let (doc, checks) = parse(&out);
    assert_eq!(checks.len(), CHECK_NAMES.len(), "{doc:#}");
    assert_eq!(status_of(&checks, "config"), "fail");
    let detail = doc["checks"][0]["detail"].as_str().expect("detail");
    assert!(detail.contains("shard"), "{detail}");
    assert!(!detail.contains('\n'), "{detail}");
    assert_eq!(out.status.code(), Some(1));
}
