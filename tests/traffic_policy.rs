//! `externalTrafficPolicy: Local` with a real external client: a network
//! namespace of the test's own (a "LAN client"), on a veth pair whose host
//! end holds the 3 nodes' addresses (198.18.214.0/24, RFC 2544's
//! benchmarking range: nothing leaves the machine). Its requests are
//! external, so each node sends them only to its own replicas; the host's
//! own requests are internal and still spread over the cluster. Needs root.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

use common::*;

const NS: &str = "shoal-ext";
const HOST_END: &str = "shoal-ext0";
const NS_END: &str = "shoal-ext1";
const CLIENT: &str = "198.18.214.2";

/// The client namespace and its veth pair, removed on drop, with the
/// nftables tables of the nodes' kernel path (`proxy::nat`): the nodes are
/// killed, and a killed node leaves its table until it starts again.
struct Lan(Vec<Ipv4Addr>);

fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr)))
    }
}

impl Lan {
    fn up(nodes: &[Ipv4Addr]) -> Result<Lan, String> {
        let _ = ip(&["netns", "del", NS]);
        let _ = ip(&["link", "del", HOST_END]);
        ip(&["netns", "add", NS])?;
        let lan = Lan(nodes.to_vec());
        ip(&["link", "add", HOST_END, "type", "veth", "peer", "name", NS_END])?;
        ip(&["link", "set", NS_END, "netns", NS])?;
        for (i, n) in nodes.iter().enumerate() {
            let prefix = if i == 0 { 24 } else { 32 };
            ip(&["addr", "add", &format!("{n}/{prefix}"), "dev", HOST_END])?;
        }
        ip(&["link", "set", HOST_END, "up"])?;
        ip(&["-n", NS, "addr", "add", &format!("{CLIENT}/24"), "dev", NS_END])?;
        ip(&["-n", NS, "link", "set", NS_END, "up"])?;
        ip(&["-n", NS, "link", "set", "lo", "up"])?;
        Ok(lan)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for n in &self.0 {
            let table = shoal::proxy::nat::table_name((*n).into());
            let _ = Command::new("nft").args(["delete", "table", "inet", &table]).output();
        }
        let _ = ip(&["link", "del", HOST_END]);
        let _ = ip(&["netns", "del", NS]);
    }
}

/// `n` GETs of `http://addr/` from inside the client namespace, each on a
/// new connection: the `node=` each answer names ("refused" for a
/// connection that failed), and the client address the replica saw.
fn from_lan(addr: SocketAddr, n: usize) -> Vec<(String, String)> {
    let py = format!(
        "import urllib.request\nfor _ in range({n}):\n  try:\n    b = urllib.request.urlopen('http://{addr}/', timeout=2).read().decode()\n    print(b.split('node=')[1].strip(), b.split('client=')[1].split()[0])\n  except Exception: print('refused -')\n"
    );
    let o = Command::new("ip").args(["netns", "exec", NS, "python3", "-c", &py]).output().expect("ip netns exec");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())))
        .collect()
}

#[test]
fn external_clients_stay_on_the_node_they_reach_and_host_clients_spread() {
    let ips: Vec<Ipv4Addr> = [1, 3, 4].iter().map(|i| Ipv4Addr::new(198, 18, 214, *i)).collect();
    let _lan = match Lan::up(&ips) {
        Ok(l) => l,
        Err(why) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "cannot make the client namespace: {why}");
            eprintln!("SKIPPED: a network namespace and a veth pair need root: {why}");
            return;
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let nodes = cluster_at(&ips, tmp.path());
    let n1 = &nodes[0];
    poll(60, "3 nodes Ready and schedulable", || {
        let v = n1.json(&["get", "nodes"])?;
        let ok = v["items"].as_array().into_iter().flatten();
        let ok = ok.filter(|n| n["status"]["state"] == "Ready" && n["spec"]["unschedulable"] == false).count();
        if ok == 3 { Ok(()) } else { Err(v.to_string()) }
    });
    n1.apply(&web_deployment("web", 6));
    n1.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  externalTrafficPolicy: Local\n  ports: [{port: 80, targetPort: http, nodePort: 30180}]\n",
    );
    n1.wait_ready("web", 6, 90);
    // Replicas per node, as the cluster reports them now.
    let per_node = || -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for p in n1.pods() {
            *m.entry(p["spec"]["nodeName"].as_str().unwrap_or("").to_string()).or_default() += 1;
        }
        m
    };
    for n in &nodes {
        let addr = SocketAddr::from((n.ip, 30180));
        let answered = poll(20, &format!("{}: external requests answered by its own replicas", n.name), || {
            let where_ = per_node();
            let got: BTreeSet<(String, String)> = from_lan(addr, 10).into_iter().collect();
            // The kernel path (`proxy::nat`): the replica sees the client's
            // own address, not the node's.
            let want: BTreeSet<(String, String)> = [if where_.contains_key(&n.name) {
                (n.name.clone(), CLIENT.to_string())
            } else {
                ("refused".into(), "-".into())
            }]
            .into();
            if got == want {
                Ok((got, where_))
            } else {
                Err(format!("got {got:?}, want {want:?} (replicas per node {where_:?})"))
            }
        });
        println!(
            "{}: external client answered by (node, client address seen) {:?} (replicas per node {:?})",
            n.name, answered.0, answered.1
        );
    }
    // The host's own requests are internal: Cluster, spread over nodes.
    let spread: BTreeSet<String> = (0..30)
        .filter_map(|_| http_get(SocketAddr::from((ips[0], 30180)), "/").ok())
        .filter_map(|b| b.split("node=").nth(1).map(|s| s.trim().to_string()))
        .collect();
    assert!(spread.len() >= 2, "internal requests spread over nodes: {spread:?} (replicas per node {:?})", per_node());
    drop(nodes);
}
