//! Secrets on 3 real nodes: `create secret generic`, read back in base64
//! from any node, given to a pod as variables and as files on a tmpfs that
//! follow the Secret's changes; never in `describe`, events, node logs or
//! any file of any data dir (sealed with the cluster data key, which lives
//! outside the data dir). A node that lost its key serves no Secret until
//! a peer gives it back over mutual TLS, its pods waiting for it; a rotation seals every Secret with a new key and
//! retires the old one everywhere.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine as _;
use common::*;
use serde_json::Value;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn sha256(s: &str) -> String {
    use std::io::Write;
    let mut c = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("sha256sum");
    c.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
}

fn random(prefix: &str) -> String {
    format!("{prefix}-{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>())
}

/// Every file under `dir` (recursively) that holds any of `needles`.
fn files_holding(dir: &Path, needles: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                for n in needles {
                    if bytes.windows(n.len()).any(|w| w == n.as_bytes()) {
                        out.push(format!("{} holds {n:?}", p.display()));
                    }
                }
            }
        }
    }
    out
}

fn secret_value(node: &TestNode, name: &str, key: &str) -> Result<String, String> {
    let v = node.json(&["get", "secret", name])?;
    if v.get("sealed").is_some() {
        return Err(format!("the API returned the sealed form: {v}"));
    }
    let enc = v["data"][key].as_str().ok_or_else(|| format!("no data.{key}: {v}"))?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(enc).map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn node_of<'a>(c: &'a Cluster, pod: &Value) -> &'a TestNode {
    let name = pod["spec"]["nodeName"].as_str().unwrap_or_default();
    c.nodes.iter().find(|n| n.name == name).unwrap_or_else(|| panic!("pod on an unknown node: {pod}"))
}

#[test]
fn a_secret_reaches_pods_on_any_node_and_is_never_in_the_clear() {
    let c = Cluster::start(3, FAST);
    let n0 = &c.nodes[0];
    let password = random("pw");
    let token = random("tok");
    let token_file = c.dir().join("token.txt");
    std::fs::write(&token_file, &token).unwrap();
    let out = n0.ok(&[
        "create",
        "secret",
        "generic",
        "db",
        &format!("--from-literal=password={password}"),
        &format!("--from-file=token={}", path_str(&token_file)),
    ]);
    assert_eq!(out.trim(), "secret/db created");
    std::fs::remove_file(&token_file).unwrap();

    // Every node reads it back, base64 under data, as Kubernetes returns it.
    for n in &c.nodes {
        let got = poll(30, &format!("{} to read the secret", n.name), || secret_value(n, "db", "password"));
        assert_eq!(got, password);
        assert_eq!(secret_value(n, "db", "token").unwrap(), token);
    }
    let table = c.nodes[1].ok(&["get", "secrets"]);
    assert!(table.lines().any(|l| l.starts_with("db ") && l.contains("Opaque") && l.contains(" 2 ")), "{table}");
    let yaml = c.nodes[2].ok(&["get", "secret", "db", "-o", "yaml"]);
    assert!(yaml.contains(&b64(&password)) && !yaml.contains(&password), "{yaml}");
    let described = c.nodes[1].ok(&["describe", "secret", "db"]);
    assert!(described.contains(&format!("password:  {} bytes", password.len())), "{described}");
    assert!(!described.contains(&password) && !described.contains(&b64(&password)), "{described}");

    // A pod takes it as variables and as files.
    let manifest = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: app}}\n  template:\n    metadata: {labels: {app: app}}\n    spec:\n      volumes:\n      - {name: creds, secret: {secretName: db, defaultMode: 0400, items: [{key: password, path: pw}]}}\n      containers:\n      - name: c\n        env:\n        - {name: PW, valueFrom: {secretKeyRef: {name: db, key: password}}}\n        envFrom:\n        - {prefix: S_, secretRef: {name: db}}\n        volumeMounts:\n        - {name: creds, mountPath: /etc/creds}\n        command: [sh, -c, 'printf %s \"$PW\" | sha256sum > $SHOAL_POD_DIR/env.txt; printf %s \"$S_token\" | sha256sum >> $SHOAL_POD_DIR/env.txt; echo \"$SHOAL_VOLUME_CREDS\" >> $SHOAL_POD_DIR/env.txt; exec sleep 600']\n";
    n0.apply(manifest);
    n0.wait_ready("app", 1, 60);
    let pod = poll(30, "the pod of app", || {
        n0.pods().into_iter().find(|p| names_replica_of(p, "app")).ok_or_else(|| "none yet".to_string())
    });
    let host = node_of(&c, &pod);
    let pod_name = pod["metadata"]["name"].as_str().unwrap().to_string();
    let env_file = host.data_dir().join("pods").join(format!("default_{pod_name}")).join("env.txt");
    let env = poll(30, "env.txt", || {
        std::fs::read_to_string(&env_file).ok().filter(|s| s.lines().count() == 3).ok_or("not yet".to_string())
    });
    let lines: Vec<&str> = env.lines().collect();
    assert_eq!(lines[0].split_whitespace().next(), Some(sha256(&password).as_str()), "PW from secretKeyRef");
    assert_eq!(lines[1].split_whitespace().next(), Some(sha256(&token).as_str()), "S_token from envFrom");
    let vol = Path::new(lines[2]);
    if Path::new("/dev/shm").is_dir() {
        assert!(vol.starts_with("/dev/shm"), "a secret volume lives on tmpfs, not in the data dir: {}", vol.display());
    }
    assert!(!vol.starts_with(host.data_dir()), "{}", vol.display());
    assert_eq!(std::fs::read_to_string(vol.join("pw")).unwrap(), password);
    assert_eq!(std::fs::metadata(vol.join("pw")).unwrap().permissions().mode() & 0o777, 0o400);
    assert!(!vol.join("token").exists(), "only the items asked for");

    // A change reaches the file in place; the pod is not restarted.
    let password2 = random("pw2");
    let update = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: db}}\nstringData:\n  password: {password2}\n  token: {token}\n"
    );
    assert!(n0.apply(&update).contains("secret/db configured"));
    assert!(n0.apply(&update).contains("secret/db unchanged"), "the same data again changes nothing");
    poll(30, "the volume to follow the change", || {
        let now = std::fs::read_to_string(vol.join("pw")).unwrap_or_default();
        if now == password2 { Ok(()) } else { Err("old contents".to_string()) }
    });
    let p = n0.pods().into_iter().find(|p| names_replica_of(p, "app")).expect("the pod");
    assert_eq!(p["metadata"]["name"], pod_name.as_str());
    assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 0);
    let elsewhere = poll(30, "n3 to read the change", || {
        secret_value(&c.nodes[2], "db", "password").and_then(|v| if v == password2 { Ok(v) } else { Err("old".into()) })
    });
    assert_eq!(elsewhere, password2);

    // Never in the clear: describe, events, node logs, data dirs.
    let needles = [password.as_str(), password2.as_str(), token.as_str()];
    let b64s = [b64(&password), b64(&password2), b64(&token)];
    let all: Vec<&str> = needles.iter().copied().chain(b64s.iter().map(String::as_str)).collect();
    let pod_described = host.ok(&["describe", "pod", &pod_name]);
    for n in &c.nodes {
        let events = n.ok(&["get", "events", "-A", "-o", "json"]);
        for s in &all {
            assert!(!events.contains(s), "{}'s events hold a secret value", n.name);
            assert!(!n.log().contains(s), "{}'s log holds a secret value", n.name);
            assert!(!pod_described.contains(s), "describe pod holds a secret value");
        }
        let found = files_holding(&n.data_dir(), &all);
        assert!(found.is_empty(), "a data dir holds a secret in the clear: {found:?}");
        // The key is outside the data dir, private.
        let kf = n.key_file();
        assert!(!kf.starts_with(n.data_dir()));
        assert_eq!(std::fs::metadata(&kf).unwrap().permissions().mode() & 0o777, 0o600, "{}", kf.display());
    }
    // All three hold the same key.
    let primary = |n: &TestNode| {
        let v = n.json(&["data-key"]).unwrap();
        v["keys"].as_array().unwrap().iter().find(|k| k["state"] == "primary").map(|k| k["id"].to_string())
    };
    let ids: Vec<Option<String>> = c.nodes.iter().map(primary).collect();
    assert!(ids[0].is_some() && ids.iter().all(|i| *i == ids[0]), "{ids:?}");

    // Bad input names the field and never echoes a value.
    let bad = n0.cli_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Secret\nmetadata: {name: bad}\ndata:\n  a/b: aGk=\n  pw: not-base64-hunter2!\n",
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(err.contains("data.a/b") && err.contains("data.pw") && !err.contains("hunter2"), "{err}");
}

#[test]
fn a_node_without_the_key_serves_no_secret_until_a_peer_gives_it_and_rotation_retires_the_old_key() {
    if !can_partition() {
        return;
    }
    let mut c = Cluster::start(3, FAST);
    let value = random("v");
    c.nodes[0].ok(&["create", "secret", "generic", "s", &format!("--from-literal=k={value}")]);
    for n in &c.nodes {
        assert_eq!(poll(30, "the secret everywhere", || secret_value(n, "s", "k")), value);
    }

    // Rotate: a new key seals everything; the old one is retired on every node.
    let out = c.nodes[1].ok(&["data-key", "rotate"]);
    assert!(out.contains("1 Secrets sealed again") && out.contains("2 of 2 live peers hold it"), "{out}");
    let status = c.nodes[0].json(&["data-key"]).unwrap();
    let states: Vec<&str> = status["keys"].as_array().unwrap().iter().filter_map(|k| k["state"].as_str()).collect();
    assert!(states.contains(&"old") && states.contains(&"primary"), "the old key still opens until retired: {status}");
    // Retire: refused until no node holds a Secret sealed with the old key
    // (the resealed one may not have reached them all yet), then done.
    let out = poll(30, "the retirement to be allowed", || {
        let o = c.nodes[0].cli(&["data-key", "retire"]);
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&o.stderr).into_owned())
        }
    });
    assert!(out.contains("1 old keys retired"), "{out}");
    for n in &c.nodes {
        poll(30, &format!("{} to retire the old key", n.name), || {
            let v = n.json(&["data-key"])?;
            let states: Vec<&str> = v["keys"].as_array().unwrap().iter().filter_map(|k| k["state"].as_str()).collect();
            let mut sorted = states.clone();
            sorted.sort();
            if sorted == ["primary", "retired"] { Ok(()) } else { Err(format!("{states:?}")) }
        });
        assert_eq!(secret_value(n, "s", "k").unwrap(), value, "{} still opens it", n.name);
        let kf = std::fs::read_to_string(n.key_file()).unwrap();
        let v: Value = serde_json::from_str(&kf).unwrap();
        let with_material = v["keys"].as_object().unwrap().values().filter(|k| k.get("material").is_some()).count();
        assert_eq!(with_material, 1, "the retired key's material is erased from {}'s file", n.name);
    }

    // A DaemonSet's pod on every node reads the Secret.
    c.nodes[0].apply("apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent}\nspec:\n  selector: {matchLabels: {app: agent}}\n  template:\n    metadata: {labels: {app: agent}}\n    spec:\n      containers:\n      - name: c\n        env: [{name: K, valueFrom: {secretKeyRef: {name: s, key: k}}}]\n        command: [sleep, '600']\n");
    let on_n3 = |n: &TestNode| n.pods().into_iter().find(|p| of_daemonset(p, "agent") && p["spec"]["nodeName"] == "n3");
    let before = poll(60, "the DaemonSet's pod running on n3", || {
        let p = on_n3(&c.nodes[2]).ok_or("not listed")?;
        if p["status"]["containerStatuses"][0]["ready"] == true { Ok(p) } else { Err(p.to_string()) }
    });
    assert!(pid_of(&before).is_some(), "a process pod");

    // n3 loses its key file and comes back cut off from its peers.
    let ips: Vec<_> = c.nodes.iter().map(|n| n.ip).collect();
    c.nodes[2].kill9();
    std::fs::remove_file(c.nodes[2].key_file()).unwrap();
    let mut cut = Partition::new(&ips[2..], &ips[..2]);
    c.nodes[2].restart();
    let n3 = &c.nodes[2];
    let err = n3.cli(&["get", "secret", "s"]);
    let msg = String::from_utf8_lossy(&err.stderr);
    assert!(!err.status.success(), "a node without the key serves no secret");
    assert!(msg.contains("has not received the cluster data key"), "{msg}");
    assert!(!msg.contains(&value));
    let w = n3.cli(&["create", "secret", "generic", "t", "--from-literal=x=y"]);
    assert!(!w.status.success(), "nor seals a new one while Secrets exist it cannot open");
    let list = n3.cli(&["get", "secrets"]);
    assert!(!list.status.success());
    // Its pod (a process, started again with the node) waits for the key.
    poll(30, "n3's pod to wait for the key", || {
        let p = on_n3(n3).ok_or("not listed")?;
        let waiting = p["status"]["containerStatuses"][0]["state"]["waiting"].clone();
        let msg = waiting["message"].as_str().unwrap_or_default();
        if waiting["reason"] == "CreateContainerConfigError" && msg.contains("has not received the cluster data key") {
            Ok(())
        } else {
            Err(p.to_string())
        }
    });

    // A rotation now reaches the two connected nodes only: retiring the old
    // key is refused while n3 cannot answer (it would lose what it holds).
    let c0 = &c.nodes[0];
    assert!(c0.ok(&["data-key", "rotate"]).contains("now seals"));
    let r = c0.cli(&["data-key", "retire"]);
    let why = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success() && why.contains("n3 did not answer"), "{why}");

    // Healed: it fetches the key from a peer over mutual TLS.
    cut.heal();
    assert_eq!(poll(60, "n3 to receive the key", || secret_value(n3, "s", "k")), value);
    assert_eq!(std::fs::metadata(n3.key_file()).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(n3.log().contains("received data keys from a peer"), "the key came from a peer");
    poll(60, "the retirement once n3 is back", || {
        let o = c0.cli(&["data-key", "retire"]);
        if o.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&o.stderr).into_owned()) }
    });
    poll(30, "n3 to read it under the newest key", || secret_value(n3, "s", "k"));
    poll(30, "n3's pod to start once the key is here", || {
        let p = on_n3(n3).ok_or("not listed")?;
        if p["status"]["containerStatuses"][0]["ready"] == true { Ok(()) } else { Err(p.to_string()) }
    });
}
