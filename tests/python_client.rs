//! The official Kubernetes Python client (`kubernetes` on PyPI) against a
//! real 3-node cluster (writes replicate, pods and their logs are spread
//! over the nodes), through the kubeconfig `shoal kubeconfig` writes: strict
//! decoding of nodes and pods, writes, patches, the scale subresource,
//! selectors, logs, and watches (from a list's version, from none, and
//! 410 for a foreign one). The checks are in `tests/python/k8s_client.py`.
//!
//! The client lives in a virtualenv `.ci/run` makes (`target/k8s-py`), or
//! the interpreter `SHOAL_K8S_PYTHON` names.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

fn python() -> Option<PathBuf> {
    let p = std::env::var_os("SHOAL_K8S_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/k8s-py/bin/python"));
    let has = Command::new(&p).args(["-c", "import kubernetes"]).output().is_ok_and(|o| o.status.success());
    has.then_some(p)
}

#[test]
fn the_official_python_client_reads_writes_patches_and_watches() {
    let Some(py) = python() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the Python client is needed under CI (.ci/run installs it in target/k8s-py)"
        );
        eprintln!(
            "SKIPPED: no Python with the `kubernetes` package (python3 -m venv target/k8s-py && target/k8s-py/bin/pip install kubernetes)"
        );
        return;
    };
    let c = Cluster::start(3, FAST);
    let node = &c.nodes[1];
    let kc = node.dir.join("kube").join("config");
    std::fs::create_dir_all(kc.parent().unwrap()).unwrap();
    node.ok(&["kubeconfig", "--write", "--kubeconfig", kc.to_str().unwrap()]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/k8s_client.py");
    let o = Command::new(&py).arg(&script).arg(&kc).arg("3").output().expect("run python");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("ALL OK"),
        "{out}\n{}\nnode log:\n{}",
        String::from_utf8_lossy(&o.stderr),
        node.log()
    );
}
