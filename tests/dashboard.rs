//! The dashboard at `/ui`, on every node: its assets are served without the
//! token (they hold no data) and everything else needs it; the bandwidth
//! fan-out lists every node; and in a real headless browser (Debian's
//! chromium, driven by selenium, over the API's HTTPS) the page shows the
//! cluster, then a killed node as Dead and its replicas moved.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::*;

fn python() -> Option<PathBuf> {
    let p = std::env::var_os("SHOAL_UI_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/k8s-py/bin/python"));
    let has = Command::new(&p).args(["-c", "import selenium"]).output().is_ok_and(|o| o.status.success());
    let browser =
        std::path::Path::new("/usr/bin/chromium").exists() && std::path::Path::new("/usr/bin/chromedriver").exists();
    (has && browser).then_some(p)
}

fn api(node: &TestNode) -> SocketAddr {
    SocketAddr::from((node.ip, 7420))
}

#[test]
fn the_dashboard_shows_a_node_die_and_its_replicas_move() {
    let c = Cluster::start(3, FAST);
    let token = std::fs::read_to_string(c.nodes[0].data_dir().join("api-token")).unwrap().trim().to_string();
    // Every node serves the page; without a token, only the assets.
    for n in &c.nodes {
        let page = http_get(api(n), "/ui").unwrap();
        assert!(page.contains("200 OK") && page.contains("/ui/app.js"), "{page}");
        assert!(page.to_ascii_lowercase().contains("content-security-policy"), "{page}");
        let js = http_get(api(n), "/ui/app.js").unwrap();
        assert!(js.contains("200 OK") && js.contains("Authorization"), "{js}");
        let refused = http_get(api(n), "/shoal/v1/bandwidth?all=true").unwrap();
        assert!(refused.contains(" 401 "), "{refused}");
    }
    // The bandwidth fan-out: every node's counters, none unreachable.
    let bw = poll(20, "every node's gossip counters", || {
        let raw = http_get_auth(api(&c.nodes[1]), "/shoal/v1/bandwidth?all=true", &token)?;
        let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        let v: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("{e}: {raw}"))?;
        let names: Vec<&str> = v["items"].as_array().into_iter().flatten().filter_map(|i| i["node"].as_str()).collect();
        if names == ["n1", "n2", "n3"] && v["unreachable"].as_array().is_some_and(Vec::is_empty) {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    });
    assert!(bw["items"][0]["gossipBytesSent"].as_u64().unwrap_or(0) > 0, "{bw}");

    let Some(py) = python() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the browser test is needed under CI (.ci/run installs chromium, chromium-driver and selenium)"
        );
        eprintln!(
            "SKIPPED the browser part: needs /usr/bin/chromium and /usr/bin/chromedriver (apt-get install chromium \
             chromium-driver) and selenium in target/k8s-py (target/k8s-py/bin/pip install selenium)"
        );
        return;
    };
    c.nodes[0].apply(&web_deployment("web", 6));
    c.nodes[0].apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80, targetPort: http}]\n",
    );
    c.nodes[0].wait_ready("web", 6, 60);
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dashboard");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/dashboard.py");
    let mut child = Command::new(py)
        .arg(script)
        .args(["--url", &format!("https://{}:7420/ui", c.nodes[0].ip), "--token", &token])
        .args(["--nodes", "n1,n2,n3", "--victim", "n3", "--workload", "default/web", "--replicas", "6"])
        .arg("--shots")
        .arg(&shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python runs tests/python/dashboard.py");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(ready.starts_with("READY"), "the page never showed the cluster: {ready:?}");
    println!("dashboard before: {ready}");
    let mut c = c;
    c.nodes[2].kill9_with_pods();
    writeln!(child.stdin.as_mut().unwrap(), "killed").unwrap();
    let done = lines.next().and_then(Result::ok).unwrap_or_default();
    let status = child.wait().unwrap();
    println!("dashboard after kill -9 of n3: {done}");
    assert!(status.success() && done.starts_with("OK"), "{done:?} ({status})");
    println!("screenshots: {}-before.png, {}-after.png", shots.display(), shots.display());
}
