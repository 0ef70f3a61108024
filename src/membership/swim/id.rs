//! A node's identity in SWIM: its name, generation (new per start), a
//! bump (new each time the cluster wrongly declared this generation down
//! and it came back) and its gossip address.
//!
//! foca compares identities whole and uses `addr` to spot two identities
//! of one address: the newer (generation, then bump) wins, so a restarted
//! node replaces its old self at once, as a new generation does in the
//! view.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::model::node::NodeName;

/// One node generation as SWIM knows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SwimId {
    /// Shared: foca copies and compares identities on every update it
    /// applies and every member it picks (a `String` here was a copy and
    /// an allocation each time). Encoded as a string.
    pub name: NodeName,
    pub generation: u64,
    /// Incremented when this node finds itself declared down and rejoins
    /// (a pause, a lost link): foca then sees a fresh identity, while the
    /// view still sees the same generation.
    pub bump: u32,
    pub addr: SocketAddr,
}

impl SwimId {
    pub fn new(name: &str, generation: u64, addr: SocketAddr) -> SwimId {
        SwimId { name: NodeName::from(name), generation, bump: 0, addr }
    }

    /// A placeholder for a seed known only by its address: foca accepts an
    /// announce sent to any identity of its own address.
    pub fn seed(addr: SocketAddr) -> SwimId {
        SwimId { name: NodeName::default(), generation: 0, bump: 0, addr }
    }
}

impl foca::Identity for SwimId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(SwimId { bump: self.bump.wrapping_add(1), ..self.clone() })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.generation, self.bump) > (adversary.generation, adversary.bump)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    fn addr() -> SocketAddr {
        "127.0.0.11:7421".parse().unwrap()
    }

    #[test]
    fn the_encoding_is_the_one_of_a_name_held_as_a_string() {
        // What earlier versions sent: a node of this version and one of an
        // earlier version read each other's identities.
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Before {
            name: String,
            generation: u64,
            bump: u32,
            addr: SocketAddr,
        }
        let id = SwimId { bump: 3, ..SwimId::new("node-é", 1_700_000_000_123, addr()) };
        let before = Before { name: "node-é".into(), generation: id.generation, bump: 3, addr: addr() };
        let bytes = postcard::to_stdvec(&id).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&before).unwrap());
        assert_eq!(postcard::from_bytes::<SwimId>(&bytes).unwrap(), id);
        assert_eq!(postcard::from_bytes::<Before>(&bytes).unwrap(), before);
        assert!(postcard::from_bytes::<SwimId>(&bytes[..3]).is_err(), "a cut identity is an error");
    }

    #[test]
    fn a_newer_generation_or_bump_wins_the_address() {
        let old = SwimId::new("a", 1, addr());
        let restarted = SwimId::new("a", 2, addr());
        let rejoined = old.renew().unwrap();
        assert!(restarted.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&restarted));
        assert!(rejoined.win_addr_conflict(&old));
        assert_eq!((rejoined.name.as_str(), rejoined.generation, rejoined.bump), ("a", 1, 1));
        assert!(restarted.win_addr_conflict(&rejoined), "a new start beats any number of rejoins");
    }
}
