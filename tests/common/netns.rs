//! Hosts of their own for real nodes: one network namespace per node, on a
//! bridge the test makes (10.213.X.0/24, the test process at .1), with
//! faults a test can inject per host: the cable pulled, packets dropped
//! between groups, random loss. Everything is undone on drop.
//!
//! Docker sets iptables' FORWARD policy to DROP and bridged traffic passes
//! iptables, so the bridge's traffic is accepted explicitly.

use std::net::Ipv4Addr;
use std::process::Command;

/// Runs a command; panics with its output if it fails.
pub fn sh(args: &[&str]) {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// Whether this machine can make namespaces and bridges (root, iproute2,
/// iptables). Outside CI a missing capability skips the test loudly; under
/// CI (`CI=true`) it fails, so CI never passes by skipping.
pub fn can_make_hosts() -> bool {
    let ok = nix::unistd::geteuid().is_root()
        && Command::new("ip").args(["netns", "list"]).output().is_ok_and(|o| o.status.success())
        && Command::new("iptables").args(["-S", "FORWARD"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "host tests need root, iproute2 and iptables under CI");
        eprintln!("SKIPPED: host tests need root, iproute2 and iptables (network namespaces on a bridge)");
    }
    ok
}

/// A bridge and `n` namespaces on it.
pub struct Hosts {
    pub x: u8,
    pub n: usize,
    bridge: String,
    forward: Vec<Vec<String>>,
}

impl Hosts {
    pub fn create(n: usize) -> Hosts {
        let taken =
            String::from_utf8_lossy(&Command::new("ip").args(["-o", "addr"]).output().unwrap().stdout).to_string();
        let x = (1..250u8)
            .map(|i| (i as u32 * 37 + std::process::id()) % 250 + 1)
            .map(|i| i as u8)
            .find(|x| {
                !taken.contains(&format!("10.213.{x}."))
                    && !std::path::Path::new(&format!("/run/netns/shoal{x}-1")).exists()
            })
            .expect("a free 10.213.X.0/24");
        let bridge = format!("shbr{x}");
        let mut h = Hosts { x, n, bridge: bridge.clone(), forward: Vec::new() };
        sh(&["ip", "link", "add", &bridge, "type", "bridge"]);
        sh(&["ip", "addr", "add", &format!("10.213.{x}.1/24"), "dev", &bridge]);
        sh(&["ip", "link", "set", &bridge, "up"]);
        for dir in ["-i", "-o"] {
            let rule: Vec<String> = ["FORWARD", dir, &bridge, "-j", "ACCEPT"].iter().map(|s| s.to_string()).collect();
            let mut add = vec!["iptables".to_string(), "-I".into()];
            add.extend(rule.iter().cloned());
            sh(&add.iter().map(String::as_str).collect::<Vec<_>>());
            h.forward.push(rule);
        }
        for i in 1..=n {
            let ns = h.ns(i);
            let veth = h.veth(i);
            sh(&["ip", "netns", "add", &ns]);
            sh(&["ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
            sh(&["ip", "link", "set", &veth, "master", &bridge, "up"]);
            sh(&["ip", "-n", &ns, "addr", "add", &format!("{}/24", h.ip(i)), "dev", "eth0"]);
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        }
        h
    }

    /// Host `i` (from 1): its namespace, its address.
    pub fn ns(&self, i: usize) -> String {
        format!("shoal{}-{i}", self.x)
    }

    pub fn ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.x, 10 + i as u8)
    }

    fn veth(&self, i: usize) -> String {
        format!("shv{}-{i}", self.x)
    }

    /// The test process's own address on the bridge.
    pub fn me(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.x, 1)
    }

    /// Plugs host `i`'s cable in or pulls it out: with it out, nothing
    /// enters or leaves the host, and nothing it sends says it is gone.
    pub fn cable(&self, i: usize, plugged: bool) {
        sh(&["ip", "link", "set", &self.veth(i), if plugged { "up" } else { "down" }]);
    }

    fn iptables(&self, i: usize, args: &[&str]) {
        let ns = self.ns(i);
        let mut a = vec!["ip", "netns", "exec", &ns, "iptables"];
        a.extend_from_slice(args);
        sh(&a);
    }

    /// Drops every packet between hosts of `a` and hosts of `b` (both ways);
    /// the test process still reaches every host.
    pub fn split(&self, a: &[usize], b: &[usize]) {
        for (side, other) in [(a, b), (b, a)] {
            for &i in side {
                for &j in other {
                    let peer = self.ip(j).to_string();
                    self.iptables(i, &["-A", "INPUT", "-s", &peer, "-j", "DROP"]);
                    self.iptables(i, &["-A", "OUTPUT", "-d", &peer, "-j", "DROP"]);
                }
            }
        }
    }

    /// Drops every packet host `i` sends to the other hosts, while it
    /// still receives theirs (an asymmetric fault: a broken transmit path,
    /// a one-way firewall rule); the test process still reaches it.
    pub fn mute(&self, i: usize) {
        let me = self.me().to_string();
        self.iptables(i, &["-A", "OUTPUT", "-d", &me, "-j", "ACCEPT"]);
        self.iptables(i, &["-A", "OUTPUT", "-o", "eth0", "-j", "DROP"]);
    }

    /// Drops `percent` % of the packets every host receives from the
    /// others (not from the test process).
    pub fn loss(&self, percent: u32) {
        let p = format!("{:.2}", percent as f64 / 100.0);
        let me = self.me().to_string();
        for i in 1..=self.n {
            self.iptables(i, &["-A", "INPUT", "-s", &me, "-j", "ACCEPT"]);
            self.iptables(
                i,
                &["-A", "INPUT", "-m", "statistic", "--mode", "random", "--probability", &p, "-j", "DROP"],
            );
        }
    }

    /// Removes every split and loss rule.
    pub fn heal(&self) {
        for i in 1..=self.n {
            self.iptables(i, &["-F", "INPUT"]);
            self.iptables(i, &["-F", "OUTPUT"]);
        }
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for i in 1..=self.n {
            let _ = Command::new("ip").args(["link", "del", &self.veth(i)]).output();
            let _ = Command::new("ip").args(["netns", "del", &self.ns(i)]).output();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).output();
        for r in &self.forward {
            let _ = Command::new("iptables").arg("-D").args(r).output();
        }
    }
}
