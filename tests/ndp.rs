//! An IPv6 LoadBalancer address moving between hosts: a LAN client's
//! neighbour cache follows it at once, by the unsolicited neighbour
//! advertisement `net::vip::announce` sends (the IPv6 twin of the
//! gratuitous ARP `tests/load_balancer.rs` checks). Three network
//! namespaces of the test's own on a bridge (`common::netns`): a client,
//! the old holder and the new one. Needs root.

mod common;

use std::os::fd::AsRawFd;
use std::process::Command;

use common::netns::{Hosts, can_make_hosts, sh};
use common::poll;

fn out(args: &[&str]) -> String {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn mac(ns: &str) -> String {
    out(&["ip", "netns", "exec", ns, "cat", "/sys/class/net/eth0/address"]).trim().to_string()
}

/// A TCP connect from namespace `ns` to port 9 of `ip`: "refused" when a
/// host there answered (nothing listens), "timeout" when nobody did.
fn knock(ns: &str, ip: &str) -> String {
    let py = format!(
        "import socket\ns = socket.socket(socket.AF_INET6)\ns.settimeout(1)\ntry:\n  s.connect(('{ip}', 9)); print('open')\nexcept ConnectionRefusedError: print('refused')\nexcept OSError: print('timeout')\n"
    );
    out(&["ip", "netns", "exec", ns, "python3", "-c", &py]).trim().to_string()
}

/// The link-layer address the client's cache holds for `vip`, if any.
fn cached(ns: &str, vip: &str) -> Option<String> {
    let s = out(&["ip", "-n", ns, "-6", "neigh", "show", vip, "dev", "eth0"]);
    let words: Vec<&str> = s.split_whitespace().collect();
    words.iter().position(|w| *w == "lladdr").and_then(|i| words.get(i + 1)).map(|m| m.to_string())
}

#[test]
fn a_neighbour_advertisement_moves_a_clients_cache_to_the_new_holder() {
    if !can_make_hosts() {
        return;
    }
    let hosts = Hosts::create(3);
    let (client, old, new) = (hosts.ns(1), hosts.ns(2), hosts.ns(3));
    let net = format!("fd00:213:{}::", hosts.x);
    for (i, ns) in [&client, &old, &new].iter().enumerate() {
        sh(&["ip", "-n", ns, "addr", "add", &format!("{net}{}/64", 11 + i), "dev", "eth0", "nodad"]);
    }
    let vip = format!("{net}99");
    // The old holder has the address; the client talks to it, so its cache
    // points there.
    sh(&["ip", "-n", &old, "addr", "add", &format!("{vip}/128"), "dev", "eth0", "nodad"]);
    poll(10, "the client reaches the address at its first holder", || {
        let knocked = knock(&client, &vip);
        match cached(&client, &vip) {
            Some(m) if m == mac(&old) => Ok(()),
            other => Err(format!("client caches {other:?} (a connect: {knocked})")),
        }
    });
    // The address moves: off the old holder, onto the new one, announced
    // from the new one's namespace. Nothing else is sent to the client.
    sh(&["ip", "-n", &old, "addr", "del", &format!("{vip}/128"), "dev", "eth0"]);
    sh(&["ip", "-n", &new, "addr", "add", &format!("{vip}/128"), "dev", "eth0", "nodad"]);
    let ns_file = std::fs::File::open(format!("/run/netns/{new}")).expect("the new holder's namespace");
    let ip: std::net::IpAddr = vip.parse().unwrap();
    std::thread::spawn(move || {
        // SAFETY: setns on a namespace file this thread holds open; the
        // thread only announces, then ends.
        let r = unsafe { nix::libc::setns(ns_file.as_raw_fd(), nix::libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
        shoal::net::vip::announce("eth0", ip)
    })
    .join()
    .expect("the announcing thread")
    .expect("announce");
    let took = std::time::Instant::now();
    poll(2, "the client's cache follows the address to its new holder", || match cached(&client, &vip) {
        Some(m) if m == mac(&new) => Ok(()),
        other => Err(format!("client caches {other:?}, the new holder is {}", mac(&new))),
    });
    println!("the client's cache moved to the new holder {:?} after the advertisement", took.elapsed());
    // And the client reaches the address there.
    assert_eq!(knock(&client, &vip), "refused", "the new holder answers");
}
