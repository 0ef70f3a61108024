//! `type: LoadBalancer` on a LAN of the test's own: a bridge, three real
//! nodes and one without `CAP_NET_ADMIN`, each in a network namespace
//! (`common::netns`), and a "LAN client" in a namespace of its own that
//! reaches the Service only by its LoadBalancer address, through ARP, as a
//! laptop on a home LAN would. Every address, the pool's included, exists
//! only inside the namespaces the test made.
//!
//! - The address comes from the pool, exactly one node holds it, and the
//!   client's ARP cache points at that node.
//! - The holder is killed (`LB_ROUNDS` times, 2 by default): the test
//!   measures the time until the client is answered again on the same
//!   address, and the failed requests meanwhile; the client's cache must
//!   point at the new holder (its gratuitous ARP).
//! - The holder is cut off from the other nodes (the client still reaches
//!   it), `LB_ROUNDS` times: it must take the address off, and the test
//!   measures how long two nodes held it at once.
//! - A node that lacks `CAP_NET_ADMIN` never holds an address, and a
//!   Service only it could hold says why.
//! - With `externalTrafficPolicy: Local`, the client is answered by the
//!   holder's own replica, which sees the client's address (the kernel
//!   path), and by the next holder's after the holder is killed.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::netns::{Hosts, can_make_hosts};
use common::*;
use serde_json::Value;

/// Nodes that can hold addresses; host N + 1 cannot, host N + 2 is the client.
const N: usize = 3;
/// The client is answered again on the address this soon after its holder
/// is killed: failure detection (`dead_after`, 2.5 s) plus a gossip round,
/// with room for a loaded CI machine.
const FAILOVER_BOUND: Duration = Duration::from_secs(8);
/// A holder cut off from the majority has taken its address off this soon:
/// its right lapses `dead_after` (2.5 s) after it last heard from a
/// majority both ways, and the node acts on it within a lease beat.
const RELEASE_BOUND: Duration = Duration::from_secs(6);
/// The longest two nodes may hold one address at once during a split. The
/// cut-off holder keeps its right `dead_after` (2.5 s) after it last heard
/// from a majority both ways, and acts within a lease beat (750 ms); the
/// majority's phi detector may declare it Dead sooner than `dead_after`,
/// and the new holder takes the address then. The overlap is at most the
/// difference: `dead_after` plus a beat.
const OVERLAP_BOUND: Duration = Duration::from_millis(3250);

fn rounds() -> usize {
    std::env::var("LB_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2)
}

fn config(h: &Hosts, extra: &str) -> String {
    format!("{FAST}\n[load_balancer]\npool = [\"10.213.{x}.200-203\"{extra}]\ninterface = \"eth0\"\n", x = h.x)
}

fn sh_out(args: &[&str]) -> String {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The hosts (1..=n) whose eth0 has `vip` now.
fn holders(h: &Hosts, n: usize, vip: Ipv4Addr) -> Vec<usize> {
    let want = format!(" {vip}/32 ");
    (1..=n).filter(|i| sh_out(&["ip", "-n", &h.ns(*i), "-o", "addr", "show", "dev", "eth0"]).contains(&want)).collect()
}

fn mac(h: &Hosts, i: usize) -> String {
    let out = sh_out(&["ip", "-n", &h.ns(i), "link", "show", "eth0"]);
    out.split("link/ether ").nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or_default().to_string()
}

/// The MAC address the client's ARP cache gives for `vip`.
fn client_sees(h: &Hosts, client: usize, vip: Ipv4Addr) -> String {
    let out = sh_out(&["ip", "-n", &h.ns(client), "neigh", "show", &vip.to_string()]);
    out.split("lladdr ").nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or_default().to_string()
}

/// Waits until the client's ARP cache gives holder `i`'s MAC for `vip`:
/// the holder announces a takeover every lease beat (750 ms) while another
/// node still says it holds the address, then three times more, so a cache
/// that an old holder answered meanwhile follows within about two seconds
/// of the old holder letting go.
fn arp_points_at(h: &Hosts, client: usize, vip: Ipv4Addr, i: usize) {
    let want = mac(h, i);
    poll(5, &format!("the client's ARP cache at n{i} ({want})"), || {
        let got = client_sees(h, client, vip);
        if got == want { Ok(()) } else { Err(got) }
    });
}

/// One request of the LAN client.
#[derive(Debug, Clone)]
struct Sample {
    /// When the request was sent, and when it ended.
    start: Instant,
    at: Instant,
    answer: Result<String, String>,
}

/// A client in namespace `ns` asking `addr` for `/` every 20 ms.
struct Client {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn get(addr: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(1))).map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    match out.split("\r\n\r\n").nth(1) {
        Some(body) if out.starts_with("HTTP/1.0 200") => Ok(body.to_string()),
        _ => Err(format!("bad answer: {out:?}")),
    }
}

impl Client {
    fn start(ns: &str, addr: SocketAddr) -> Client {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (samples.clone(), stop.clone());
        let netns = std::fs::File::open(format!("/run/netns/{ns}")).expect("the client's namespace");
        let thread = std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            // SAFETY: setns on a namespace file this thread holds open;
            // it moves only this thread (and its sockets) into the client's host.
            let r = unsafe { nix::libc::setns(netns.as_raw_fd(), nix::libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            while !st.load(Ordering::Relaxed) {
                let start = Instant::now();
                let answer = get(addr);
                s.lock().unwrap().push(Sample { start, at: Instant::now(), answer });
                std::thread::sleep(Duration::from_millis(20)); // the request rate, not a wait for a condition
            }
        });
        Client { samples, stop, thread: Some(thread) }
    }

    /// The requests sent at `t` or later.
    fn since(&self, t: Instant) -> Vec<Sample> {
        self.samples.lock().unwrap().iter().filter(|s| s.start >= t).cloned().collect()
    }

    /// Waits for an answer to a request sent at `t` or later; returns when
    /// it came.
    fn answered_after(&self, t: Instant, secs: u64, what: &str) -> Instant {
        poll(secs, what, || {
            let s = self.since(t);
            s.iter()
                .find(|s| s.answer.is_ok())
                .map(|s| s.at)
                .ok_or_else(|| format!("{} requests, last: {:?}", s.len(), s.last().map(|s| s.answer.clone())))
        })
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn condition(n: &TestNode, svc: &str) -> Result<(String, String), String> {
    let v: Value = n.json(&["get", "service", svc])?;
    let c = &v["status"]["conditions"][0];
    Ok((c["reason"].as_str().unwrap_or("").to_string(), c["message"].as_str().unwrap_or("").to_string()))
}

fn web_service(name: &str, ip: Option<&str>) -> String {
    let ip = ip.map(|i| format!("  loadBalancerIP: {i}\n")).unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  type: LoadBalancer\n{ip}  selector: {{app: web}}\n  ports: [{{name: http, port: 80, targetPort: http}}]\n"
    )
}

/// Cordons (or uncordons) node `i` through `via`, once `via` knows it (a
/// node just restarted may not be in its view yet).
fn cordon(via: &TestNode, i: usize, on: bool) {
    let verb = if on { "cordon" } else { "uncordon" };
    poll(20, &format!("{verb} n{i}"), || {
        let o = via.cli(&[verb, &format!("n{i}")]);
        if o.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&o.stderr).into_owned()) }
    });
}

/// The pids of the watchdogs guarding `vip` (`shoal lease-watchdog --address`).
fn watchdogs(vip: Ipv4Addr) -> Vec<i32> {
    let want = vip.to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            let guards = args.iter().any(|a| *a == b"lease-watchdog")
                && args.windows(2).any(|w| w[0] == b"--address" && w[1] == want.as_bytes());
            guards.then_some(pid)
        })
        .collect()
}

fn spread(mut v: Vec<Duration>) -> String {
    v.sort();
    let pct = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    format!("p50 {:?}, p99 {:?}, max {:?} over {}", pct(0.5), pct(0.99), v[v.len() - 1], v.len())
}

/// Waits until exactly one node holds `vip` and the client is answered.
fn wait_one_holder(h: &Hosts, client: &Client, vip: Ipv4Addr, secs: u64) -> usize {
    let t = Instant::now();
    poll(secs, "exactly one holder of the address", || match holders(h, N + 1, vip).as_slice() {
        [one] => Ok(*one),
        other => Err(format!("holders {other:?}")),
    });
    client.answered_after(t, secs, "the client answered");
    poll(secs, "one holder, stable", || match holders(h, N + 1, vip).as_slice() {
        [one] => Ok(*one),
        other => Err(format!("holders {other:?}")),
    })
}

#[test]
fn load_balancer_addresses_move_without_a_leader() {
    if !can_make_hosts() {
        return;
    }
    let hosts = Hosts::create(N + 2);
    let client_host = N + 2;
    let tmp = tempfile::tempdir().unwrap();
    let api = |i: usize| {
        vec!["--api-addr".to_string(), format!("{}:7420", hosts.ip(i)), "--api-plain-http".into(), "any".into()]
    };
    let first =
        TestNode::start_in("n1", hosts.ip(1), tmp.path().join("n1"), &config(&hosts, ""), &api(1), Some(hosts.ns(1)));
    first.wait_healthy();
    let token = first.ok(&["token"]).trim().to_string();
    let mut nodes = vec![first];
    for i in 2..=N + 1 {
        let mut args = vec!["--join".into(), format!("{}:7421", hosts.ip(1)), "--token".into(), token.clone()];
        args.extend(api(i));
        let name = format!("n{i}");
        // Host N + 1 runs without CAP_NET_ADMIN, with an address only it offers.
        let (cfg, wrapper): (String, &[&str]) = if i == N + 1 {
            let only = format!(", \"10.213.{}.220\"", hosts.x);
            (config(&hosts, &only), &["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin"])
        } else {
            (config(&hosts, ""), &[])
        };
        nodes.push(TestNode::start_wrapped(
            &name,
            hosts.ip(i),
            tmp.path().join(&name),
            &cfg,
            &args,
            Some(hosts.ns(i)),
            wrapper,
        ));
    }
    for n in &nodes {
        n.wait_healthy();
    }
    poll(30, "4 nodes Ready", || {
        let v = nodes[0].json(&["get", "nodes"])?;
        let ready = v["items"].as_array().into_iter().flatten().filter(|n| n["status"]["state"] == "Ready").count();
        if ready == N + 1 { Ok(()) } else { Err(format!("{ready} Ready")) }
    });

    // A bad address is refused with the field and the pools named.
    let o = nodes[0].cli_stdin(&["apply", "-f", "-"], &web_service("bad", Some("10.99.0.1")));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("spec.loadBalancerIP") && err.contains("load_balancer.pool"), "{err}");

    nodes[0].apply(&web_deployment("web", 3));
    nodes[0].apply(&web_service("web", None));
    let vip = Ipv4Addr::new(10, 213, hosts.x, 200);
    let v = poll(30, "the address in status.loadBalancer", || {
        let v = nodes[1].json(&["get", "service", "web"])?;
        let ip = v["status"]["loadBalancer"]["ingress"][0]["ip"].as_str().unwrap_or("").to_string();
        if ip.is_empty() { Err(v.to_string()) } else { Ok(ip) }
    });
    assert_eq!(v, vip.to_string(), "the first address of the pool");
    let table = nodes[0].ok(&["get", "services"]);
    assert!(table.contains(&vip.to_string()) && table.contains("LoadBalancer"), "{table}");

    let client = Client::start(&hosts.ns(client_host), SocketAddr::from((vip, 80)));
    let mut holder = wait_one_holder(&hosts, &client, vip, 60);
    assert_ne!(holder, N + 1, "the node without CAP_NET_ADMIN never holds an address");
    poll(10, "the Held condition", || match condition(&nodes[0], "web")? {
        (r, m) if r == "Held" && m.contains(&format!("node n{holder}")) => Ok(()),
        other => Err(format!("{other:?}")),
    });
    arp_points_at(&hosts, client_host, vip, holder);
    let d = nodes[0].ok(&["describe", "service", "web"]);
    assert!(d.contains(&format!("LoadBalancer: {vip}")) && d.contains("Held (serving)"), "{d}");

    // A Service only the node without CAP_NET_ADMIN could hold says why.
    nodes[0].apply(&web_service("only4", Some(&format!("10.213.{}.220", hosts.x))));
    poll(20, "the NoHolder condition", || match condition(&nodes[1], "only4")? {
        (r, m) if r == "NoHolder" && m.contains("CAP_NET_ADMIN") => Ok(()),
        other => Err(format!("{other:?}")),
    });

    // The holder is killed: the address comes back on another node.
    let mut failovers = Vec::new();
    let mut failed = Vec::new();
    for round in 0..rounds() {
        // The time from the moment `shoal` is dead; its pods go right after.
        nodes[holder - 1].kill9();
        let t0 = Instant::now();
        nodes[holder - 1].kill9_with_pods();
        let back = client.answered_after(t0, FAILOVER_BOUND.as_secs() * 3, "the client answered after the kill");
        let lost = client.since(t0).iter().filter(|s| s.at < back && s.answer.is_err()).count();
        // A node restarted in the round before may be taking its address
        // back meanwhile (a planned move): one holder again soon.
        let new = poll(5, &format!("round {round}: one holder after the kill"), || {
            match holders(&hosts, N + 1, vip).as_slice() {
                [one] => Ok(*one),
                other => Err(format!("holders {other:?}")),
            }
        });
        assert_ne!(new, holder, "round {round}");
        arp_points_at(&hosts, client_host, vip, new);
        eprintln!("round {round}: n{holder} killed, n{new} answers after {:?}, {lost} requests failed", back - t0);
        failovers.push(back - t0);
        failed.push(lost);
        nodes[holder - 1].restart();
        holder = wait_one_holder(&hosts, &client, vip, 60);
    }
    eprintln!("failover after a kill: {}; failed requests {failed:?}", spread(failovers.clone()));
    assert!(failovers.iter().all(|d| *d <= FAILOVER_BOUND), "failovers {failovers:?}, bound {FAILOVER_BOUND:?}");

    // Cordoned, the holder hands the address over, as a drain moves pods.
    let t0 = Instant::now();
    cordon(&nodes[0], holder, true);
    let moved = poll(20, "the address off the cordoned node", || match holders(&hosts, N + 1, vip).as_slice() {
        [one] if *one != holder => Ok(*one),
        other => Err(format!("holders {other:?}")),
    });
    let back = client.answered_after(Instant::now(), 20, "the client answered after the cordon");
    let lost = client.since(t0).iter().filter(|s| s.at < back && s.answer.is_err()).count();
    eprintln!("cordon: n{holder} handed the address to n{moved} after {:?}, {lost} requests failed", back - t0);
    cordon(&nodes[0], holder, false);
    holder = wait_one_holder(&hosts, &client, vip, 60);

    // Taken off by hand, the address is put back by its holder.
    common::netns::sh(&["ip", "-n", &hosts.ns(holder), "addr", "del", &format!("{vip}/32"), "dev", "eth0"]);
    poll(10, "the address back on its holder", || match holders(&hosts, N + 1, vip).as_slice() {
        [one] if *one == holder => Ok(()),
        other => Err(format!("holders {other:?}")),
    });

    // Killed together with its watchdog, a holder leaves the address on its
    // host; its next start takes it off (here it is cordoned meanwhile, so
    // that it is not the holder again).
    let old = holder;
    let dogs = watchdogs(vip);
    assert_eq!(dogs.len(), 1, "one watchdog guards the address: {dogs:?}");
    // The watchdog first: it would take the address off when the node's pipe closes.
    for pid in dogs {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    nodes[old - 1].kill9();
    let other = (1..=N).find(|i| *i != old).unwrap();
    poll(20, "a new holder beside the stale address", || {
        let h = holders(&hosts, N + 1, vip);
        if h.len() == 2 && h.contains(&old) { Ok(()) } else { Err(format!("holders {h:?}")) }
    });
    cordon(&nodes[other - 1], old, true);
    nodes[old - 1].restart();
    poll(20, "the stale address swept", || match holders(&hosts, N + 1, vip).as_slice() {
        [one] if *one != old => Ok(()),
        other => Err(format!("holders {other:?}")),
    });
    cordon(&nodes[other - 1], old, false);
    holder = wait_one_holder(&hosts, &client, vip, 60);

    // The holder is cut off from the other nodes; the client still reaches it.
    let mut releases = Vec::new();
    let mut overlaps = Vec::new();
    for round in 0..rounds() {
        let (released, taken, overlap) = split_holder(&hosts, holder, vip);
        eprintln!(
            "split {round}: n{holder} took the address off after {released:?}, a new holder had it after {taken:?}, two holders for {overlap:?}"
        );
        releases.push(released);
        overlaps.push(overlap);
        let t1 = Instant::now();
        client.answered_after(t1, 20, "the client answered by the new holder");
        hosts.heal();
        holder = wait_one_holder(&hosts, &client, vip, 60);
    }
    eprintln!("split: released after {}; two holders for {}", spread(releases.clone()), spread(overlaps.clone()));
    assert!(releases.iter().all(|d| *d <= RELEASE_BOUND), "released after {releases:?}, bound {RELEASE_BOUND:?}");
    assert!(overlaps.iter().all(|d| *d <= OVERLAP_BOUND), "two holders for {overlaps:?}, bound {OVERLAP_BOUND:?}");

    // externalTrafficPolicy: Local on the address: the LAN client is
    // answered only by the holder's own replica, which sees the client's
    // own address (the kernel path, `proxy::nat`), before and after the
    // holder dies. A replica on every node, so that each holder has one.
    nodes[0].apply(&web_deployment("web", (N + 1) as u32));
    nodes[0].apply(&web_service("web", None).replace("  selector:", "  externalTrafficPolicy: Local\n  selector:"));
    nodes[0].wait_ready("web", (N + 1) as i64, 60);
    let seen = format!("client={}", hosts.ip(client_host));
    // Who holds the address is read in each attempt, before and after
    // the answers: right after a kill, the first node to take it may hand
    // it on to the one placement names once every view agrees.
    let one_holder = |killed: Option<usize>| match holders(&hosts, N + 1, vip).as_slice() {
        [one] if Some(*one) != killed => Ok(*one),
        other => Err(format!("holders {other:?}")),
    };
    let local_to = |killed: Option<usize>, what: &str| {
        poll(30, what, || {
            let holder = one_holder(killed)?;
            let by = format!("node=n{holder}");
            let from = Instant::now().checked_sub(Duration::from_secs(1)).unwrap_or_else(Instant::now);
            let s = client.since(from);
            let bad: Vec<_> =
                s.iter().filter(|s| !s.answer.as_ref().is_ok_and(|a| a.contains(&by) && a.contains(&seen))).collect();
            if s.len() >= 10 && bad.is_empty() && one_holder(killed)? == holder {
                Ok((holder, s.len()))
            } else {
                Err(format!(
                    "{} of {} answers in the last second not {by} seeing {seen}: {:?}",
                    bad.len(),
                    s.len(),
                    bad.last()
                ))
            }
        })
    };
    let (holder, n) = local_to(None, "Local: answered by the holder's replica, seeing the client");
    eprintln!("Local: n{holder} holds the address; its replica answered the last {n} requests, seeing {seen}");
    nodes[holder - 1].kill9();
    nodes[holder - 1].kill9_with_pods();
    let (new, n) =
        local_to(Some(holder), "Local after the kill: answered by the new holder's replica, seeing the client");
    eprintln!("Local: n{holder} killed, n{new} holds the address; its replica answered the last {n} requests");
}

/// Cuts `holder` off from the other nodes and samples who holds `vip`
/// every 10 ms until one other node does, stably: returns when the holder
/// took it off, when another node had it, and how long both had it.
fn split_holder(hosts: &Hosts, holder: usize, vip: Ipv4Addr) -> (Duration, Duration, Duration) {
    let others: Vec<usize> = (1..=N + 1).filter(|i| *i != holder).collect();
    let t0 = Instant::now();
    hosts.split(&[holder], &others);
    let mut timeline: Vec<(Instant, Vec<usize>)> = Vec::new();
    let end = t0 + Duration::from_secs(30);
    loop {
        let now = Instant::now();
        let h = holders(hosts, N + 1, vip);
        timeline.push((now, h));
        let stable = timeline.iter().rev().take_while(|(_, h)| !h.contains(&holder) && h.len() == 1).count();
        if stable >= 20 {
            break;
        }
        assert!(now < end, "the split did not settle in 30 s: {:?}", timeline.last());
        std::thread::sleep(Duration::from_millis(10)); // the sampling rate, not a wait for a condition
    }
    let released = timeline.iter().find(|(_, h)| !h.contains(&holder)).map(|(t, _)| *t - t0).unwrap();
    let taken = timeline.iter().find(|(_, h)| h.iter().any(|x| *x != holder)).map(|(t, _)| *t - t0).unwrap();
    let overlap: Duration = timeline.windows(2).filter(|w| w[0].1.len() >= 2).map(|w| w[1].0 - w[0].0).sum();
    (released, taken, overlap)
}
