//! kubectl for the tests: the binaries to run (the oldest and the newest
//! preinstalled) and calls that assert on their outcome.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The kubectl binaries to test: the oldest and the newest versioned one
/// beside /usr/bin/kubectl, else `kubectl` on PATH. Empty: none here.
pub fn kubectls() -> Vec<PathBuf> {
    let mut versioned: Vec<(u32, PathBuf)> = Vec::new();
    if let Ok(real) = std::fs::canonicalize("/usr/bin/kubectl")
        && let Some(dir) = real.parent()
        && let Ok(entries) = std::fs::read_dir(dir)
    {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(minor) = name.strip_prefix("kubectl.1.").and_then(|m| m.parse::<u32>().ok()) {
                versioned.push((minor, e.path()));
            }
        }
    }
    versioned.sort();
    match (versioned.first(), versioned.last()) {
        (Some(a), Some(b)) if a.0 != b.0 => vec![a.1.clone(), b.1.clone()],
        (Some(a), _) => vec![a.1.clone()],
        _ => {
            let on_path =
                Command::new("kubectl").args(["version", "--client"]).output().is_ok_and(|o| o.status.success());
            if on_path { vec![PathBuf::from("kubectl")] } else { Vec::new() }
        }
    }
}

pub fn kubectl(bin: &Path, kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .env("HOME", kubeconfig.parent().unwrap())
        .output()
        .expect("run kubectl")
}

pub fn ok(bin: &Path, kubeconfig: &Path, args: &[&str]) -> String {
    let o = kubectl(bin, kubeconfig, args);
    assert!(
        o.status.success(),
        "{} {args:?} failed: {}{}",
        bin.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn fails(bin: &Path, kubeconfig: &Path, args: &[&str]) -> String {
    let o = kubectl(bin, kubeconfig, args);
    assert!(
        !o.status.success(),
        "{} {args:?} should have failed: {}",
        bin.display(),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A kubectl binary's minor version (`kubectl.1.NN`, else it says).
pub fn minor(bin: &Path) -> u32 {
    if let Some(m) = bin.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("kubectl.1.")) {
        return m.parse().expect("kubectl.1.NN");
    }
    let o = Command::new(bin).args(["version", "--client", "-o", "json"]).output().expect("run kubectl");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("kubectl version -o json");
    v["clientVersion"]["minor"].as_str().and_then(|m| m.trim_end_matches('+').parse().ok()).expect("a minor version")
}

/// Skips (loudly; under CI fails) when no kubectl is here.
pub fn need_kubectl() -> Vec<PathBuf> {
    let bins = kubectls();
    if bins.is_empty() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "kubectl is needed under CI (.ci/run installs it)");
        eprintln!("SKIPPED: no kubectl on this machine (apt install kubernetes-client)");
    }
    bins
}
