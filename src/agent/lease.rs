//! The lease of a fenced pod, and the watchdog that enforces it when
//! `shoal` itself cannot.
//!
//! A fenced process pod runs under `shoal lease-watchdog`: its parent, the
//! leader of its process group, a separate process that outlives the node.
//! While the node may run the pod (it sees a majority), it writes a byte to
//! the watchdog's stdin every `ttl / 4`; each byte extends the lease by
//! `ttl` on the host's monotonic clock (elapsed time, never the wall clock).
//! When the node stops renewing (it lost its majority, or hangs) the lease
//! ends `ttl` after the last byte; when the node dies (`kill -9`) the pipe
//! closes and the watchdog acts at once. Either way it kills the whole
//! group (SIGKILL) and itself with it.
//!
//! So a fenced pod never outlives its node's right to run it by more than
//! `ttl`. A replacement elsewhere waits `placement.fence_delay` after the
//! old node is declared Dead, which the config requires to exceed
//! `ttl × (1 + MAX_DRIFT)` plus `NOTICE_SLACK` (the time a cut-off node may
//! need, beyond its peers, to notice it lost its majority).

use std::io::Read;
use std::time::{Duration, Instant};

/// Default lease length (`agent.fence_lease`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(3);
/// Bound on how much faster one host's monotonic clock may run than
/// another's (NTP keeps real ones within 500 ppm; 1 % leaves room).
pub const MAX_DRIFT: f64 = 0.01;
/// How much later than its peers a cut-off node may notice it lost its
/// majority (its failure detector runs on the same settings as theirs).
pub const NOTICE_SLACK: Duration = Duration::from_secs(2);

/// The shortest `fence_delay` that is safe with lease `ttl`.
pub fn min_fence_delay(ttl: Duration) -> Duration {
    ttl.mul_f64(1.0 + MAX_DRIFT) + NOTICE_SLACK
}

/// A lease from beats and the clock. Pure.
#[derive(Debug, Clone, Copy)]
pub struct Lease {
    ttl: Duration,
    until: Instant,
}

impl Lease {
    /// A lease granted at `now` (the watchdog starts with one).
    pub fn new(now: Instant, ttl: Duration) -> Lease {
        Lease { ttl, until: now + ttl }
    }
    /// A renewal arrived at `now`.
    pub fn beat(&mut self, now: Instant) {
        self.until = self.until.max(now + self.ttl);
    }
    pub fn expired(&self, now: Instant) -> bool {
        now >= self.until
    }
}

/// How often the node renews a lease of `ttl`.
pub fn beat_interval(ttl: Duration) -> Duration {
    (ttl / 4).max(Duration::from_millis(10))
}

/// What the watchdog's stdin says.
enum Heard {
    Beat,
    Closed,
}

extern "C" fn ignore(_: nix::libc::c_int) {}

/// Writes to the pod's log, if it is still there (not with the macro that
/// prints to stderr: with the node gone, stderr is a broken pipe and that
/// macro would panic).
fn say(what: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "shoal lease-watchdog: {what}");
}

/// Kills the process group the watchdog leads (its pod with it); never returns.
fn kill_group(why: &str) -> ! {
    say(&format!("{why}: killing the pod"));
    let _ = nix::sys::signal::killpg(nix::unistd::getpgrp(), nix::sys::signal::Signal::SIGKILL);
    std::process::exit(137)
}

/// Ignores SIGTERM and SIGPIPE in the watchdog. The group's SIGTERM is for
/// the pod: the watchdog waits for the pod to end, then reports how it
/// ended. With the node gone the pod's log is a broken pipe, and the
/// watchdog must live on to act. A handler (unlike SIG_IGN) is reset to
/// the default in a child at exec, so the pod still gets both.
fn shield() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let noop = SigAction::new(SigHandler::Handler(ignore), SaFlags::SA_RESTART, SigSet::empty());
    for sig in [Signal::SIGTERM, Signal::SIGPIPE] {
        // SAFETY: the handler does nothing, so it is async-signal-safe.
        let _ = unsafe { sigaction(sig, &noop) };
    }
}

/// Enforces a lease of `ttl` renewed on stdin until `ended` reports how
/// what it guards ended (its exit code); calls `kill` when the lease ends.
fn enforce(ttl: Duration, mut ended: impl FnMut() -> Option<i32>, kill: impl Fn(&str) -> i32) -> i32 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 64];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Heard::Closed);
                    return;
                }
                Ok(_) => {
                    if tx.send(Heard::Beat).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut lease = Lease::new(Instant::now(), ttl);
    loop {
        if let Some(code) = ended() {
            return code;
        }
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(Heard::Beat) => lease.beat(Instant::now()),
            Ok(Heard::Closed) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return kill("the node that holds this lease is gone");
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if lease.expired(Instant::now()) {
            return kill(&format!("the node stopped renewing this lease ({ttl:?})"));
        }
    }
}

/// `shoal lease-watchdog --ttl-ms N -- COMMAND...`: runs the command as its
/// child and enforces the lease renewed on stdin; returns the child's exit
/// code (128 + signal when a signal ended it).
pub fn watchdog(ttl: Duration, argv: &[String]) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    let Some(program) = argv.first() else {
        say("no command given");
        return 2;
    };
    shield();
    let mut child =
        match std::process::Command::new(program).args(&argv[1..]).stdin(std::process::Stdio::null()).spawn() {
            Ok(c) => c,
            Err(e) => {
                say(&format!("cannot run {program:?}: {e}"));
                return if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 };
            }
        };
    let ended = || match child.try_wait() {
        Ok(Some(st)) => Some(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))),
        Ok(None) => None,
        Err(_) => kill_group("cannot watch the pod"),
    };
    enforce(ttl, ended, |why: &str| -> i32 { kill_group(why) })
}

/// Whether process `pid` is container `id`'s (its cgroup names the
/// container): never kill a process that merely took a recycled pid, or
/// one of another PID namespace.
pub fn is_container_process(pid: i32, id: &str) -> bool {
    !id.is_empty() && std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| c.contains(id))
}

/// `shoal lease-watchdog --ttl-ms N --pid P --container ID`: enforces a
/// fenced container's lease from outside it (the engine may be gone too):
/// kills the container's first process, which ends the container. Returns
/// 0 once the container has ended by itself.
pub fn watch_container(ttl: Duration, pid: i32, id: &str) -> i32 {
    shield();
    if !is_container_process(pid, id) {
        say(&format!(
            "process {pid} is not container {id}'s (another PID namespace?): its lease cannot be enforced here"
        ));
        return 1;
    }
    let ended = || (!is_container_process(pid, id)).then_some(0);
    let kill = |why: &str| {
        say(&format!("{why}: killing container {id}"));
        if is_container_process(pid, id) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        137
    };
    enforce(ttl, ended, kill)
}

/// `shoal lease-watchdog --ttl-ms N --address IP --dev IFACE`: guards a
/// LoadBalancer address the node put on `dev` (`proxy::lb`): takes it off
/// when the lease ends or the node is gone (its pipe closes, which is also
/// how the node releases it), so that a node killed or cut off stops
/// answering for the address within the lease. Returns 0 once removed.
pub fn watch_address(ttl: Duration, dev: &str, ip: std::net::IpAddr) -> i32 {
    shield();
    let release = |why: &str| {
        say(&format!("{why}: taking {ip} off {dev}"));
        match crate::net::vip::del(dev, ip) {
            Ok(()) => 0,
            Err(e) => {
                say(&e.to_string());
                1
            }
        }
    };
    enforce(ttl, || None, release)
}

/// Renews a fenced pod's lease while its node may run it; ends when the
/// pod has ended (`done`) or its watchdog is gone (the pipe breaks).
pub async fn renew(
    lease: super::runtime::LeaseSpec,
    mut stdin: tokio::process::ChildStdin,
    mut done: tokio::sync::oneshot::Receiver<()>,
) {
    use tokio::io::AsyncWriteExt;
    let every = beat_interval(lease.ttl);
    loop {
        if lease.renewable() && (stdin.write_all(b".").await.is_err() || stdin.flush().await.is_err()) {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = &mut done => return,
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a base instant for the pure lease
mod tests {
    use super::*;

    #[test]
    fn a_lease_lasts_ttl_after_its_last_beat() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(3);
        let mut l = Lease::new(t0, ttl);
        assert!(!l.expired(t0 + Duration::from_millis(2999)));
        assert!(l.expired(t0 + ttl), "granted at start for one ttl");
        l.beat(t0 + Duration::from_secs(2));
        assert!(!l.expired(t0 + Duration::from_millis(4999)));
        assert!(l.expired(t0 + Duration::from_secs(5)));
        l.beat(t0 + Duration::from_secs(1));
        assert!(!l.expired(t0 + Duration::from_millis(4999)), "a late-delivered old beat never shortens it");
    }

    #[tokio::test]
    async fn a_fenced_pod_starts_only_while_its_lease_may_be_renewed() {
        let (tx, rx) = tokio::sync::watch::channel(None);
        let lease = super::super::runtime::LeaseSpec { ttl: Duration::from_secs(3), until: rx };
        assert_eq!(lease.may_start().unwrap_err().reason, "Fenced", "no majority yet");
        let now = tokio::time::Instant::now();
        tx.send_replace(Some(now + Duration::from_secs(1)));
        assert!(lease.may_start().is_ok());
        tx.send_replace(Some(now));
        assert!(lease.may_start().is_err(), "the right has run out");
    }

    #[test]
    fn the_fence_delay_covers_the_lease_drift_and_notice() {
        let ttl = Duration::from_secs(3);
        assert!(min_fence_delay(ttl) > ttl + NOTICE_SLACK);
        assert!(min_fence_delay(ttl) <= Duration::from_secs(10), "the default fence_delay (10 s) is safe");
        assert_eq!(beat_interval(ttl), Duration::from_millis(750));
    }
}
