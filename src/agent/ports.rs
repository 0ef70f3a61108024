//! Host ports for pods: each declared port of each replica gets a free port
//! on the node IP, so several replicas can share a host (Nomad's model).
//!
//! The allocator remembers what it handed out until released, so two pods
//! never get the same port even before either has bound it. A port handed
//! out is free for both TCP and UDP (a pod may declare either, or both).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Mutex;

/// No host port could be allocated.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("cannot bind a port on {ip}: {source}")]
    Bind { ip: IpAddr, source: std::io::Error },
    #[error("no free port found on {0}")]
    Exhausted(IpAddr),
}

pub struct PortAllocator {
    ip: IpAddr,
    taken: Mutex<BTreeSet<u16>>,
    /// Ports never to hand out (the node's own listeners).
    reserved: BTreeSet<u16>,
}

impl PortAllocator {
    pub fn new(ip: IpAddr, reserved: impl IntoIterator<Item = u16>) -> PortAllocator {
        PortAllocator { ip, taken: Mutex::new(BTreeSet::new()), reserved: reserved.into_iter().collect() }
    }

    /// A port free on the node IP right now. Tries `preferred` first (to keep
    /// a pod's port across container restarts).
    pub fn allocate(&self, preferred: Option<u16>) -> Result<u16, PortError> {
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        let udp_free = |p: u16| UdpSocket::bind(SocketAddr::new(self.ip, p)).is_ok();
        if let Some(p) = preferred
            && !taken.contains(&p)
            && TcpListener::bind(SocketAddr::new(self.ip, p)).is_ok()
            && udp_free(p)
        {
            taken.insert(p);
            return Ok(p);
        }
        for _ in 0..64 {
            let bind = |source| PortError::Bind { ip: self.ip, source };
            let l = TcpListener::bind(SocketAddr::new(self.ip, 0)).map_err(bind)?;
            let port = l.local_addr().map_err(bind)?.port();
            if !taken.contains(&port) && !self.reserved.contains(&port) && udp_free(port) {
                taken.insert(port);
                return Ok(port);
            }
        }
        Err(PortError::Exhausted(self.ip))
    }

    pub fn release(&self, port: u16) {
        self.taken.lock().unwrap_or_else(|p| p.into_inner()).remove(&port);
    }

    /// Marks a port as used (an adopted container's mapping).
    pub fn claim(&self, port: u16) {
        self.taken.lock().unwrap_or_else(|p| p.into_inner()).insert(port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_hands_out_a_port_twice() {
        let a = PortAllocator::new("127.0.0.1".parse().unwrap(), []);
        let p1 = a.allocate(None).unwrap();
        let p2 = a.allocate(Some(p1)).unwrap();
        assert_ne!(p1, p2);
        a.release(p1);
        assert_eq!(a.allocate(Some(p1)).unwrap(), p1);
    }
}
