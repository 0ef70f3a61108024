//! Pods as real Docker containers (the machine's engine, an image built
//! locally from Debian's static busybox): deploy, restart after `docker
//! kill`, adoption after `kill -9` of the node, limits, volumes, pull
//! policies, and an engine that disappears and comes back.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::*;

fn web(name: &str, replicas: u32, extra_volumes: &str, extra_mounts: &str, start: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 2
      volumes:
        - {{name: scratch, emptyDir: {{}}}}
{extra_volumes}      containers:
        - name: httpd
          image: {TEST_IMAGE}
          command: ["sh", "-c", "{start}mkdir -p /www && echo hello-$SHOAL_POD_NAME > /www/index.html && echo written > /scratch/mark && exec httpd -f -p 8080 -h /www"]
          ports: [{{name: http, containerPort: 8080}}]
          resources: {{limits: {{memory: 64Mi, cpu: 500m}}}}
          volumeMounts:
            - {{name: scratch, mountPath: /scratch}}
{extra_mounts}          readinessProbe: {{httpGet: {{path: /, port: http}}, periodSeconds: 1}}
"#
    )
}

fn container_of(node: &TestNode, pod: &str) -> Option<String> {
    find(&node.pods(), pod).and_then(|p| p["status"]["containerStatuses"][0]["containerID"].as_str().map(String::from))
}

#[test]
fn containers_run_restart_and_carry_limits_and_volumes() {
    if !docker_ready() {
        return;
    }
    let node = TestNode::start("dock", FAST, &[]);
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("hello.txt"), "from-the-host\n").unwrap();
    node.ok(&["create", "configmap", "site", "--from-literal=greeting=hello-v1"]);
    let pw = format!("pw-{:016x}", rand::random::<u64>());
    node.ok(&["create", "secret", "generic", "creds", &format!("--from-literal=pw={pw}")]);
    let m = web(
        "web",
        2,
        &format!(
            "        - {{name: data, hostPath: {{path: {}}}}}\n        - {{name: site, configMap: {{name: site}}}}\n        - {{name: creds, secret: {{secretName: creds}}}}\n",
            host.path().display()
        ),
        "            - {name: data, mountPath: /data, readOnly: true}\n            - {name: site, mountPath: /etc/site}\n            - {name: creds, mountPath: /etc/creds, readOnly: true}\n",
        "cat /data/hello.txt; cat /etc/site/greeting; echo; ",
    );
    node.apply(&m);
    node.wait_ready("web", 2, 60);
    for p in node.pods() {
        let name = p["metadata"]["name"].as_str().unwrap().to_string();
        let port = p["spec"]["containers"][0]["ports"][0]["hostPort"].as_u64().unwrap() as u16;
        let body = http_get(SocketAddr::from((node.ip, port)), "/").unwrap();
        assert!(body.contains(&format!("hello-{name}")), "{body}");
        // emptyDir: written inside, visible in the pod's directory on the host.
        let mark = node.data_dir().join(format!("pods/default_{name}/volumes/scratch/mark"));
        assert_eq!(std::fs::read_to_string(mark).unwrap().trim(), "written");
        // hostPath: the host's file, read inside, shows in the logs.
        let logs = poll(10, "the host file in the logs", || {
            let l = node.ok(&["logs", &name]);
            if l.contains("from-the-host") { Ok(l) } else { Err(l) }
        });
        assert!(logs.contains("from-the-host"));
        // configMap: its key as a file at mountPath.
        poll(10, "the ConfigMap's file in the logs", || {
            let l = node.ok(&["logs", &name]);
            if l.contains("hello-v1") { Ok(()) } else { Err(l) }
        });
    }
    // secret: its key as a file inside the container, from a tmpfs on the
    // host (never in the data dir), and not in the logs.
    let running = container_of(&node, "web-0").unwrap();
    let id = running.trim_start_matches("docker://").to_string();
    let o = Command::new("docker").args(["exec", &id, "cat", "/etc/creds/pw"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), pw, "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new("docker")
        .args(["inspect", "--format", "{{range .Mounts}}{{.Destination}}={{.Source}} {{end}}", &id])
        .output()
        .unwrap();
    let mounts = String::from_utf8_lossy(&o.stdout).into_owned();
    let source = mounts.split_whitespace().find_map(|m| m.strip_prefix("/etc/creds=")).unwrap_or_default().to_string();
    assert!(!source.is_empty() && !source.starts_with(&path_str(&node.data_dir())), "{mounts}");
    if std::path::Path::new("/dev/shm").is_dir() {
        assert!(source.starts_with("/dev/shm/"), "{mounts}");
    }
    let web0 = find(&node.pods(), "web-0").and_then(|p| p["metadata"]["name"].as_str().map(String::from)).unwrap();
    assert!(!node.ok(&["logs", &web0]).contains(&pw));
    // A change to the ConfigMap reaches the running container's file.
    node.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: site}\ndata: {greeting: hello-v2}\n");
    let running = container_of(&node, "web-0").unwrap();
    poll(30, "the new greeting inside the container", || {
        let o = Command::new("docker")
            .args(["exec", running.trim_start_matches("docker://"), "cat", "/etc/site/greeting"])
            .output()
            .map_err(|e| e.to_string())?;
        let got = String::from_utf8_lossy(&o.stdout).into_owned();
        if got == "hello-v2" { Ok(()) } else { Err(format!("{got:?} {}", String::from_utf8_lossy(&o.stderr))) }
    });
    assert_eq!(container_of(&node, "web-0").unwrap(), running, "updated in place, not restarted");
    // Limits from the manifest, as Docker sees them.
    let id = container_of(&node, "web-0").unwrap();
    let o = Command::new("docker")
        .args([
            "inspect",
            "--format",
            "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.RestartPolicy.Name}}",
            id.trim_start_matches("docker://"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "67108864 500000000 no");
    // docker kill: Shoal (not Docker) restarts it.
    Command::new("docker").args(["kill", id.trim_start_matches("docker://")]).output().unwrap();
    poll(60, "web-0 restarted by shoal", || {
        let pods = node.pods();
        let p = find(&pods, "web-0").ok_or("gone")?;
        let r = p["status"]["containerStatuses"][0]["restartCount"].as_u64().unwrap_or(0);
        let ready = p["status"]["containerStatuses"][0]["ready"] == true;
        if r >= 1 && ready { Ok(()) } else { Err(format!("restarts {r} ready {ready}")) }
    });
    assert_ne!(container_of(&node, "web-0").unwrap(), id);
    // Deleting the deployment leaves no container behind.
    node.ok(&["delete", "deployment", "web"]);
    poll(30, "containers removed", || {
        let left = docker_ids(&format!("shoal.managed={}", node.marker()));
        if left.is_empty() { Ok(()) } else { Err(format!("{left:?}")) }
    });
}

#[test]
fn after_kill9_the_node_adopts_its_containers_and_runs_each_replica_once() {
    if !docker_ready() {
        return;
    }
    let mut node = TestNode::start("dock", FAST, &[]);
    node.apply(&web("web", 3, "", "", ""));
    node.wait_ready("web", 3, 60);
    let label = format!("shoal.managed={}", node.marker());
    let mut before = docker_ids(&label);
    before.sort();
    assert_eq!(before.len(), 3);
    node.kill9();
    node.restart();
    node.wait_ready("web", 3, 60);
    let mut after = docker_ids(&label);
    after.sort();
    assert_eq!(after, before, "the same containers, adopted, none added");
    let ev = node.ok(&["get", "events"]);
    assert!(ev.contains("Adopted"), "{ev}");
}

#[test]
fn a_container_reading_a_secret_keeps_running_while_its_restarted_node_lacks_the_key() {
    if !docker_ready() {
        return;
    }
    let mut node = TestNode::start("dock", FAST, &[]);
    node.ok(&["create", "secret", "generic", "creds", "--from-literal=pw=x1"]);
    node.apply(&web(
        "web",
        1,
        "        - {name: creds, secret: {secretName: creds}}\n",
        "            - {name: creds, mountPath: /etc/creds}\n",
        "",
    ));
    node.wait_ready("web", 1, 60);
    let id = container_of(&node, "web-0").unwrap();
    let running = |id: &str| {
        let o = Command::new("docker")
            .args(["inspect", "--format", "{{.State.Running}}", id.trim_start_matches("docker://")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim() == "true"
    };
    // Restarted without its key (a single node: no peer to fetch it from).
    node.kill9();
    let saved = node.key_file().with_extension("saved");
    std::fs::rename(node.key_file(), &saved).unwrap();
    node.restart();
    poll(30, "the pod to wait for the key", || {
        let pods = node.pods();
        let p = find(&pods, "web-0").ok_or("not listed")?;
        let reason = &p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"];
        if reason == "CreateContainerConfigError" { Ok(()) } else { Err(p.to_string()) }
    });
    assert!(running(&id), "the container that ran before the restart is not stopped for want of the key");
    // The key is back: the same container is adopted, not restarted.
    node.kill9();
    std::fs::rename(&saved, node.key_file()).unwrap();
    node.restart();
    node.wait_ready("web", 1, 60);
    assert_eq!(container_of(&node, "web-0").unwrap(), id);
}

#[test]
fn a_fenced_container_dies_with_its_nodes_shoal() {
    if !docker_ready() {
        return;
    }
    let mut node = TestNode::start("dock", FAST, &[]);
    node.apply(&web("db", 1, "", "", "").replace("  replicas: 1\n", "  replicas: 1\n  fencing: Majority\n"));
    node.wait_ready("db", 1, 60);
    let id = container_of(&node, "db-0").unwrap();
    let id = id.trim_start_matches("docker://").to_string();
    let running = || {
        let o = Command::new("docker").args(["inspect", "--format", "{{.State.Running}}", &id]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim() == "true"
    };
    assert!(running());
    // `shoal` alone dies: an unfenced container would keep running (to be
    // adopted); this one's lease watchdog kills it.
    let killed = std::time::Instant::now();
    node.kill9();
    poll(10, "the fenced container to be killed by its watchdog", || {
        if running() { Err("still running".to_string()) } else { Ok(()) }
    });
    eprintln!("fenced container after kill -9 of shoal: stopped {:?} after", killed.elapsed());
}

#[test]
fn pull_failures_are_a_clear_status() {
    if !docker_ready() {
        return;
    }
    let node = TestNode::start("dock", FAST, &[]);
    let m = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ghost}\nspec:\n  selector: {matchLabels: {a: g}}\n  template:\n    metadata: {labels: {a: g}}\n    spec:\n      containers: [{name: c, image: shoal-test/not-here:9, imagePullPolicy: Never}]\n";
    node.apply(m);
    poll(60, "ErrImageNeverPull", || {
        let t = node.ok(&["get", "pods"]);
        if t.contains("ErrImageNeverPull") { Ok(()) } else { Err(t) }
    });
    // An unreachable registry: ErrImagePull with the engine's message.
    node.apply(&m.replace("ghost", "ghost2").replace("a: g", "a: g2").replace(", imagePullPolicy: Never", ""));
    poll(90, "ErrImagePull", || {
        let o = node.cli(&["describe", "pod", &pod_name(&node, "ghost2-0")]);
        let d = String::from_utf8_lossy(&o.stdout).into_owned();
        if d.contains("ErrImagePull") { Ok(()) } else { Err(d) }
    });
    // A malformed image name never gets that far.
    let o = node.cli_stdin(&["apply", "-f", "-"], &m.replace("shoal-test/not-here:9", "Bad Image"));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid image reference"));
}

/// A unix-socket forwarder standing in for the engine's socket, so that a
/// test can make "the engine" disappear for one node without stopping the
/// machine's Docker.
struct SocketProxy {
    path: std::path::PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SocketProxy {
    fn start(path: &std::path::Path) -> SocketProxy {
        use std::os::unix::net::{UnixListener, UnixStream};
        let _ = std::fs::remove_file(path);
        let l = UnixListener::bind(path).unwrap();
        l.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let p2 = path.to_path_buf();
        let thread = std::thread::spawn(move || {
            while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        c.set_nonblocking(false).unwrap();
                        let Ok(up) = UnixStream::connect("/var/run/docker.sock") else { continue };
                        let (c2, up2) = (c.try_clone().unwrap(), up.try_clone().unwrap());
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut &c, &mut &up);
                            let _ = up.shutdown(std::net::Shutdown::Write);
                        });
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut &up2, &mut &c2);
                            let _ = c2.shutdown(std::net::Shutdown::Write);
                        });
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
            let _ = std::fs::remove_file(p2);
        });
        SocketProxy { path: path.to_path_buf(), stop, thread: Some(thread) }
    }

    fn stop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for SocketProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn when_a_nodes_engine_disappears_its_container_pods_move_and_it_comes_back() {
    if !docker_ready() {
        return;
    }
    let sock_dir = tempfile::tempdir().unwrap();
    let sock = sock_dir.path().join("docker.sock");
    let mut proxy = SocketProxy::start(&sock);
    let cfg_a = format!(
        "[labels]\nengine = \"proxied\"\n[runtimes]\ndocker = \"on\"\ndocker_socket = \"unix://{}\"\n{FAST}",
        sock.display()
    );
    let c =
        Cluster::start_with(2, |i| if i == 0 { cfg_a.clone() } else { format!("[runtimes]\ndocker = \"on\"\n{FAST}") });
    // Pin the pod to n1 while its engine answers.
    c.nodes[0].apply(
        &web("web", 1, "", "", "").replace("      volumes:", "      nodeSelector: {engine: proxied}\n      volumes:"),
    );
    c.nodes[0].wait_ready("web", 1, 60);
    let runtimes = |i: usize| {
        c.nodes[i].json(&["get", "nodes", "n1"]).unwrap()["status"]["nodeInfo"]["containerRuntimes"].to_string()
    };
    assert!(runtimes(1).contains("docker"));
    proxy.stop();
    poll(30, "n1 without docker, seen from n2", || {
        let r = runtimes(1);
        if r.contains("docker") { Err(r) } else { Ok(()) }
    });
    // Its pods cannot stay: no other node matches, so they wait with the reason.
    poll(30, "the pod is unschedulable with a reason", || {
        let pods = c.nodes[1].pods();
        let msg = find(&pods, "web-0").map(|p| p["status"]["conditions"][0]["message"].to_string()).unwrap_or_default();
        if msg.contains("no node matches nodeSelector engine=proxied") { Ok(()) } else { Err(msg) }
    });
    // Without the selector the pod moves to n2, which has an engine.
    c.nodes[0].apply(&web("web", 1, "", "", ""));
    poll(60, "web-0 ready on n2", || {
        let pods = c.nodes[1].pods();
        let p = find(&pods, "web-0").ok_or("no pod")?;
        if p["spec"]["nodeName"] == "n2" && p["status"]["containerStatuses"][0]["ready"] == true {
            Ok(())
        } else {
            Err(p["spec"]["nodeName"].to_string())
        }
    });
    // The engine comes back: n1 offers docker again.
    let _proxy = SocketProxy::start(&sock);
    poll(30, "n1 offers docker again", || if runtimes(1).contains("docker") { Ok(()) } else { Err(runtimes(1)) });
    // ...and cleans up the container it could not reach while the engine was away.
    poll(60, "n1's stray container removed", || {
        let left = docker_ids(&format!("shoal.managed={}", c.nodes[0].marker()));
        if left.is_empty() { Ok(()) } else { Err(format!("{left:?}")) }
    });
}

/// Running containers of Deployment `deploy`'s pods, on every node (by
/// the pod label the agent sets).
/// Running containers of `deploy`'s pods on the nodes with `markers` (other
/// tests, running alongside, have their own `db`).
fn running_containers_of(deploy: &str, markers: &[String]) -> Vec<String> {
    let o = Command::new("docker")
        .args([
            "ps",
            "--no-trunc",
            "--filter",
            "label=shoal.pod",
            "--format",
            "{{.ID}} {{.Label \"shoal.pod\"}} {{.Label \"shoal.managed\"}}",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let (id, pod, marker) = (f.next()?, f.next()?, f.next()?);
            (pod.starts_with(&format!("{deploy}-")) && markers.iter().any(|m| m == marker)).then(|| id.to_string())
        })
        .collect()
}

#[test]
fn a_fenced_container_never_runs_twice_when_its_engine_disappears() {
    if !docker_ready() {
        return;
    }
    // Each node reaches the engine through a socket of its own, so that
    // either can lose it while the machine's Docker runs on.
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let socks: Vec<std::path::PathBuf> = dirs.iter().map(|d| d.path().join("docker.sock")).collect();
    let mut proxies: Vec<SocketProxy> = socks.iter().map(|s| SocketProxy::start(s)).collect();
    let c = Cluster::start_with(2, |i| {
        format!("[runtimes]\ndocker = \"on\"\ndocker_socket = \"unix://{}\"\n{FAST}", socks[i].display())
    });
    c.nodes[0].apply(&web("db", 1, "", "", "").replace("  replicas: 1\n", "  replicas: 1\n  fencing: Majority\n"));
    c.nodes[0].wait_ready("db", 1, 60);
    let owner = find(&c.nodes[0].pods(), "db-0").unwrap()["spec"]["nodeName"].as_str().unwrap().to_string();
    let i = c.nodes.iter().position(|n| n.name == owner).unwrap();
    let markers: Vec<String> = c.nodes.iter().map(|n| n.marker()).collect();
    let first = running_containers_of("db", &markers);
    assert_eq!(first.len(), 1, "{first:?}");
    // The owner's engine disappears: it cannot run containers any more, so
    // the replica moves; its container still runs, out of its reach.
    let cut = std::time::Instant::now();
    proxies[i].stop();
    let mut overlap = 0;
    let moved = poll(90, "db running on the other node only", || {
        let now = running_containers_of("db", &markers);
        if now.len() > 1 {
            overlap += 1;
        }
        let on_other = find(&c.nodes[1 - i].pods(), "db-0").is_some_and(|p| {
            p["spec"]["nodeName"] != owner.as_str() && p["status"]["containerStatuses"][0]["ready"] == true
        });
        if on_other && now.len() == 1 && !now.contains(&first[0]) { Ok(cut.elapsed()) } else { Err(format!("{now:?}")) }
    });
    assert_eq!(overlap, 0, "two copies of the fenced container ran at once");
    eprintln!("fenced container whose engine disappeared: old copy ended, new one Ready elsewhere {moved:?} after");
    drop(proxies);
}

#[test]
fn container_pods_roll_with_every_replica_ready() {
    if !docker_ready() {
        return;
    }
    let node = TestNode::start("dock", FAST, &[]);
    let versioned = |v: u32| {
        web("web", 3, "", "", "")
            .replace(
                "spec:\n  replicas:",
                "spec:\n  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}\n  replicas:",
            )
            .replace(
                "        - name: httpd\n",
                &format!("        - name: httpd\n          env: [{{name: VERSION, value: \"{v}\"}}]\n"),
            )
    };
    node.apply(&versioned(1));
    node.wait_ready("web", 3, 60);
    let label = format!("shoal.managed={}", node.marker());
    let before = docker_ids(&label);
    assert_eq!(before.len(), 3, "{before:?}");
    poll(30, "the API shows the steady state", || {
        let o = ready_pods(SocketAddr::from((node.ip, 7420)), &node.token(), "web");
        if o == Some(3) { Ok(()) } else { Err(format!("{o:?}")) }
    });
    let poller = ReadyPoller::start(&node, "web");
    node.apply(&versioned(2));
    let o = node.cli(&["rollout", "status", "deployment", "web", "--timeout", "120s"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Only new containers are left, each with the new template's env.
    let after = poll(60, "only the new containers left", || {
        let now = docker_ids(&label);
        if now.len() == 3 && now.iter().all(|id| !before.contains(id)) { Ok(now) } else { Err(format!("{now:?}")) }
    });
    let seen = poller.finish_all();
    let (min, samples) = (seen.iter().copied().min().unwrap_or(0), seen.len());
    if min < 3 {
        eprintln!("Ready counts: {seen:?}\n{}", node.log());
    }
    eprintln!("docker, 3 replicas on 1 node, maxUnavailable 0: min Ready {min} over {samples} samples");
    assert!(samples > 10, "the poller ran ({samples} samples)");
    assert!(min >= 3, "Ready dropped to {min} of 3");
    for id in after {
        let o = Command::new("docker").args(["inspect", "--format", "{{json .Config.Env}}", &id]).output().unwrap();
        assert!(String::from_utf8_lossy(&o.stdout).contains("VERSION=2"), "{}", String::from_utf8_lossy(&o.stdout));
    }
}

#[test]
fn a_container_jobs_log_is_whole_when_it_completes() {
    if !docker_ready() {
        return;
    }
    let node = TestNode::start("dockjob", FAST, &[]);
    node.apply(&format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: say}}\nspec:\n  completionMode: Indexed\n  completions: 2\n  parallelism: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{{name: c, image: {TEST_IMAGE}, command: [sh, -c, 'echo said-$JOB_COMPLETION_INDEX']}}]\n"
    ));
    poll(60, "say to complete", || {
        let j = node.json(&["get", "job", "say"])?;
        let done = j["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Complete");
        if done { Ok(()) } else { Err(format!("{}", j["status"])) }
    });
    // Read at once: the exit was reported only after the log was written.
    for i in 0..2 {
        assert_eq!(node.ok(&["logs", &format!("say-{i}")]).trim(), format!("said-{i}"));
    }
}
