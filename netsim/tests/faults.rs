//! The observer can fail: a run with an injected violation must make netsim
//! report it and exit 1 (with the replay command), and the same scenario
//! without the fault must pass. Scenarios in `tests/faults/`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faults").join(format!("{name}.toml"))
}

/// Runs the netsim binary; returns (exit code, stderr).
fn netsim(scenario: &Path, out: &Path) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_netsim"))
        .args(["--scenario", &scenario.display().to_string(), "--seed", "3", "--out", &out.display().to_string()])
        .output()
        .expect("netsim runs");
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// The scenario without its `[[events]]` (the injection).
fn without_the_fault(path: &Path, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(path).expect("scenario");
    let clean = text.split("[[events]]").next().expect("a head").to_string();
    let p = dir.join("clean.toml");
    std::fs::write(&p, clean).expect("write");
    p
}

fn assert_caught(name: &str, wanted: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = scenario(name);
    let (code, err) = netsim(&path, dir.path());
    assert_eq!(code, 1, "{name}: netsim must exit 1 on an injected violation; stderr:\n{err}");
    assert!(err.contains(wanted), "{name}: the violation must be named ({wanted:?}); stderr:\n{err}");
    assert!(err.contains("replay: cargo run -p netsim"), "{name}: the replay command is printed; stderr:\n{err}");
    let (code, err) = netsim(&without_the_fault(&path, dir.path()), dir.path());
    assert_eq!(code, 0, "{name} without the fault must pass; stderr:\n{err}");
}

#[test]
fn a_duplicated_fenced_replica_is_caught() {
    assert_caught("duplicate-fenced", "runs on more than one node");
}

#[test]
fn a_lost_acknowledged_write_is_caught_while_the_run_goes_on() {
    assert_caught("lose-write", "was lost");
}
