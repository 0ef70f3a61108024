//! What SWIM nodes send each other on the gossip port, and its encoding.
//!
//! These kinds of frame, each one gossip message:
//! - `Swim`: a foca packet (probes, acks, membership updates), in foca's
//!   own postcard encoding;
//! - `Stamped`: the same, with `Stamp`s piggybacked (`piggyback`);
//! - `Want`: "what changed since these versions?", sent to the node whose
//!   records are wanted;
//! - `Have`: that node's answer: its stamp and one page of what the asker
//!   lacks;
//! - `Sync`: the asker's stamp versions hashed into `SYNC_BUCKETS`
//!   buckets, sent to one random peer every few seconds (anti-entropy for
//!   stamps lost in gossip, as memberlist's push-pull, but a few hundred
//!   bytes at rest whatever the cluster's size);
//! - `Versions`: the answer: the versions this node holds in the buckets
//!   that differ, so the asker pulls the newer ones from their owners;
//! - `Query`: "how do you hold this member?", about a suspect held past
//!   its time (`suspicion`), to a few random peers;
//! - `Held`: the answer: the member as foca holds it there.
//!
//! A node's records are the same key-value pairs chitchat would carry
//! (`assemble::keys`), split in two sections: the summary (its `NodeInfo`
//! and other small keys, which rarely change) and its pods' statuses. Only
//! the small `Stamp` (versions of both) spreads by gossip; the sections are
//! pulled from the node itself by those that lack them. Every frame is
//! bounded; anything malformed is an error value, never a panic.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::id::SwimId;

/// First byte of every SWIM frame (chitchat's never starts with it: its
/// first byte is a message tag from 0 to 3).
pub const MAGIC: u8 = 0x5d;

const SWIM: u8 = 1;
const WANT: u8 = 2;
const HAVE: u8 = 3;
const SYNC: u8 = 4;
const VERSIONS: u8 = 5;
const QUERY: u8 = 6;
const HELD: u8 = 7;
const STAMPED: u8 = 8;
const STAMPS: u8 = 9;

/// Most stamps piggybacked on one packet (what a `Backlog` fill gives).
pub const MAX_STAMPS: usize = 127;

/// Buckets of a `Sync`: 32 × 4 bytes per exchange at rest, and a bucket
/// holds n/32 versions when it differs.
pub const SYNC_BUCKETS: usize = 32;

/// Most versions in one `Versions` answer (each answer starts at a random
/// place among the differing versions, so the next syncs cover the rest).
pub const MAX_VERSIONS: usize = 48;

/// Largest foca packet (foca's `max_packet_size`): probes and their
/// piggybacked updates stay within one Ethernet frame's worth.
pub const MAX_SWIM_PACKET: usize = 1400;

/// Most bytes of keys in one page (a frame stays well under the QUIC
/// gossip frame limit).
pub const MAX_PAGE_BYTES: usize = 32 << 10;

/// Most pages of one section: 64 × 32 KiB = 2 MiB of a node's records.
pub const MAX_PAGES: u32 = 64;

/// Longest state digest carried in a stamp (a blake3 root in hex is 64).
pub const MAX_DIGEST: usize = 128;

/// What every node must know about every other, small enough to ride on
/// probes: the versions of its records, whether it left, and the digest of
/// its desired state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub name: String,
    pub generation: u64,
    /// Its gossip address: a node that hears of it before SWIM does
    /// announces itself there (SWIM's own spread of a join can miss a node
    /// for as long as it takes a random probe to find it).
    pub addr: SocketAddr,
    /// Incremented by the node on every change of its stamp: what orders
    /// two stamps of one generation (a digest may change back and forth at
    /// the same versions).
    pub seq: u64,
    /// Version of its summary section (0: none yet).
    pub summary: u64,
    /// Version of its pods section.
    pub pods: u64,
    pub left: bool,
    /// Root digest of its desired state (hex), to spot nodes out of sync.
    pub digest: String,
}

impl Stamp {
    /// Whether this stamp is a later word of the same node than `other`.
    pub fn newer_than(&self, other: &Stamp) -> bool {
        self.name == other.name && (self.generation, self.seq) > (other.generation, other.seq)
    }

    /// Which stamp this is, without its records: what a `Versions` frame
    /// carries.
    pub fn version(&self) -> Version {
        Version { name: self.name.clone(), generation: self.generation, seq: self.seq }
    }
}

/// Which half of a node's records a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Section {
    Summary,
    Pods,
}

/// One page of a section at one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    pub section: Section,
    pub version: u64,
    pub index: u32,
    pub count: u32,
    pub keys: Vec<(String, String)>,
}

/// A request for what changed since the versions the asker holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Want {
    /// The generation the asker holds versions of (0: none).
    pub generation: u64,
    pub summary: u64,
    pub pods: u64,
}

/// An answer to `Want`: the node's stamp and at most one page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Have {
    pub stamp: Stamp,
    pub page: Option<Page>,
}

/// Which stamp of a node another node holds (name, generation, sequence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub name: String,
    pub generation: u64,
    pub seq: u64,
}

/// A member's state in foca, as a `Held` answer carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    Alive,
    Suspect,
    Down,
}

impl From<foca::State> for MemberState {
    fn from(s: foca::State) -> MemberState {
        match s {
            foca::State::Alive => MemberState::Alive,
            foca::State::Suspect => MemberState::Suspect,
            foca::State::Down => MemberState::Down,
        }
    }
}

impl From<MemberState> for foca::State {
    fn from(s: MemberState) -> foca::State {
        match s {
            MemberState::Alive => foca::State::Alive,
            MemberState::Suspect => foca::State::Suspect,
            MemberState::Down => foca::State::Down,
        }
    }
}

/// How the answering node holds a member (foca's `Member`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldMember {
    pub id: SwimId,
    pub incarnation: u16,
    pub state: MemberState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Swim(Vec<u8>),
    /// A foca packet and the stamps piggybacked on it.
    Stamped(Vec<u8>, Vec<Stamp>),
    Want(Want),
    Have(Have),
    /// Hashes of the asker's stamp versions, by bucket.
    Sync(Vec<u32>),
    /// The versions held in the buckets that differ.
    Versions(Vec<Version>),
    /// The same, as the stamps held (at most `MAX_VERSIONS`), sent beside
    /// `Versions`: a stamp carries its node's address, so a node that does
    /// not hold a member at all (a new node misses members that do not
    /// change: SWIM spreads changes only) learns where to announce itself.
    /// A node of an earlier version refuses the frame (`Kind`) and keeps
    /// the `Versions`.
    Stamps(Vec<Stamp>),
    /// How does the receiver hold this member?
    Query(SwimId),
    /// The answer.
    Held(HeldMember),
}

/// Why a frame from a peer was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error(
        "not a SWIM frame (is the peer running `--membership chitchat`? every node of a cluster must run the same membership engine)"
    )]
    NotSwim,
    #[error("unknown SWIM frame kind {0} (a newer Shoal?)")]
    Kind(u8),
    #[error("malformed SWIM frame: {0}")]
    Decode(String),
    #[error("SWIM frame out of bounds: {0}")]
    Bounds(&'static str),
}

/// A foca packet as a frame, with `stamps` piggybacked (if any).
pub fn encode_swim(packet: &[u8], stamps: &[Stamp]) -> Vec<u8> {
    if stamps.is_empty() {
        return encode_stamped(packet, &[]);
    }
    encode_stamped(packet, &postcard::to_stdvec(stamps).unwrap_or_default())
}

/// A foca packet as a frame, with a list of stamps already encoded
/// (`piggyback::Backlog::fill`; empty: none) piggybacked.
pub fn encode_stamped(packet: &[u8], stamps: &[u8]) -> Vec<u8> {
    if stamps.is_empty() {
        let mut out = Vec::with_capacity(packet.len() + 2);
        out.extend_from_slice(&[MAGIC, SWIM]);
        out.extend_from_slice(packet);
        return out;
    }
    // What postcard makes of (packet, list): the packet as a sequence of
    // bytes (its length, then them), then the list.
    let mut out = Vec::with_capacity(packet.len() + stamps.len() + 5);
    out.extend_from_slice(&[MAGIC, STAMPED]);
    out.extend_from_slice(&postcard::to_stdvec(packet).unwrap_or_default());
    out.extend_from_slice(stamps);
    out
}

pub fn encode(frame: &Frame) -> Vec<u8> {
    let (kind, body) = match frame {
        Frame::Swim(b) => return encode_swim(b, &[]),
        Frame::Stamped(b, stamps) => return encode_swim(b, stamps),
        Frame::Want(w) => (WANT, postcard::to_stdvec(w)),
        Frame::Have(h) => (HAVE, postcard::to_stdvec(h)),
        Frame::Sync(b) => (SYNC, postcard::to_stdvec(&b.iter().flat_map(|h| h.to_le_bytes()).collect::<Vec<u8>>())),
        Frame::Versions(v) => (VERSIONS, postcard::to_stdvec(v)),
        Frame::Stamps(s) => (STAMPS, postcard::to_stdvec(s)),
        Frame::Query(id) => (QUERY, postcard::to_stdvec(id)),
        Frame::Held(m) => (HELD, postcard::to_stdvec(m)),
    };
    let mut out = vec![MAGIC, kind];
    // Serializing these plain structs cannot fail (no maps with non-string
    // keys, no unsized sequences).
    out.extend_from_slice(&body.unwrap_or_default());
    out
}

/// Decodes a frame from untrusted bytes.
pub fn decode(bytes: &[u8]) -> Result<Frame, WireError> {
    let [magic, kind, body @ ..] = bytes else { return Err(WireError::NotSwim) };
    if *magic != MAGIC {
        return Err(WireError::NotSwim);
    }
    let bad = |e: postcard::Error| WireError::Decode(e.to_string());
    match *kind {
        SWIM if body.len() > MAX_SWIM_PACKET => Err(WireError::Bounds("foca packet too large")),
        SWIM => Ok(Frame::Swim(body.to_vec())),
        STAMPED => {
            let (packet, stamps): (Vec<u8>, Vec<Stamp>) = postcard::from_bytes(body).map_err(bad)?;
            if packet.len() > MAX_SWIM_PACKET {
                return Err(WireError::Bounds("foca packet too large"));
            }
            if stamps.len() > MAX_STAMPS {
                return Err(WireError::Bounds("too many stamps"));
            }
            for s in &stamps {
                check_stamp(s)?;
            }
            Ok(Frame::Stamped(packet, stamps))
        }
        WANT => Ok(Frame::Want(postcard::from_bytes(body).map_err(bad)?)),
        HAVE => {
            let h: Have = postcard::from_bytes(body).map_err(bad)?;
            check_have(&h)?;
            Ok(Frame::Have(h))
        }
        SYNC => {
            let b: Vec<u8> = postcard::from_bytes(body).map_err(bad)?;
            if b.len() != SYNC_BUCKETS * 4 {
                return Err(WireError::Bounds("sync buckets"));
            }
            Ok(Frame::Sync(b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))
        }
        VERSIONS => {
            let v: Vec<Version> = postcard::from_bytes(body).map_err(bad)?;
            if v.len() > MAX_VERSIONS || v.iter().any(|v| v.name.is_empty()) {
                return Err(WireError::Bounds("versions"));
            }
            Ok(Frame::Versions(v))
        }
        STAMPS => {
            let stamps: Vec<Stamp> = postcard::from_bytes(body).map_err(bad)?;
            if stamps.len() > MAX_VERSIONS {
                return Err(WireError::Bounds("too many stamps"));
            }
            for s in &stamps {
                check_stamp(s)?;
            }
            Ok(Frame::Stamps(stamps))
        }
        QUERY => {
            let id: SwimId = postcard::from_bytes(body).map_err(bad)?;
            check_id(&id)?;
            Ok(Frame::Query(id))
        }
        HELD => {
            let m: HeldMember = postcard::from_bytes(body).map_err(bad)?;
            check_id(&m.id)?;
            Ok(Frame::Held(m))
        }
        k => Err(WireError::Kind(k)),
    }
}

/// Longest node name in a `Query` or `Held` frame (a DNS name's bound).
pub const MAX_NAME: usize = 253;

fn check_id(id: &SwimId) -> Result<(), WireError> {
    if id.name.is_empty() || id.name.len() > MAX_NAME {
        return Err(WireError::Bounds("member name"));
    }
    Ok(())
}

fn check_stamp(s: &Stamp) -> Result<(), WireError> {
    if s.digest.len() > MAX_DIGEST {
        return Err(WireError::Bounds("state digest too long"));
    }
    if s.name.is_empty() || s.name.len() > MAX_NAME {
        return Err(WireError::Bounds("stamp's node name"));
    }
    Ok(())
}

fn check_have(h: &Have) -> Result<(), WireError> {
    if h.stamp.digest.len() > MAX_DIGEST {
        return Err(WireError::Bounds("state digest too long"));
    }
    if let Some(p) = &h.page {
        if p.count == 0 || p.count > MAX_PAGES || p.index >= p.count {
            return Err(WireError::Bounds("page index or count"));
        }
        if p.version == 0 {
            return Err(WireError::Bounds("page of version 0"));
        }
    }
    Ok(())
}

/// Splits a section's keys into pages of at most `MAX_PAGE_BYTES` (a
/// single key larger than that gets a page of its own). `None` when it
/// would take more than `MAX_PAGES`.
pub fn paginate(section: Section, version: u64, keys: &[(String, String)]) -> Option<Vec<Page>> {
    let mut chunks: Vec<Vec<(String, String)>> = vec![Vec::new()];
    let mut bytes = 0;
    for (k, v) in keys {
        let size = k.len() + v.len() + 8;
        if bytes + size > MAX_PAGE_BYTES && !chunks.last().is_some_and(Vec::is_empty) {
            chunks.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        chunks.last_mut()?.push((k.clone(), v.clone()));
    }
    let count = u32::try_from(chunks.len()).ok().filter(|c| *c <= MAX_PAGES)?;
    Some(
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, keys)| Page { section, version, index: i as u32, count, keys })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stamp() -> Stamp {
        Stamp {
            name: "a".into(),
            generation: 5,
            addr: "127.0.0.11:7421".parse().unwrap(),
            seq: 3,
            summary: 2,
            pods: 7,
            left: false,
            digest: "ab".into(),
        }
    }

    #[test]
    fn frames_round_trip() {
        let frames = [
            Frame::Swim(vec![1, 2, 3]),
            Frame::Stamped(vec![1, 2, 3], vec![stamp(), Stamp { name: "b".into(), ..stamp() }]),
            Frame::Want(Want { generation: 5, summary: 1, pods: 0 }),
            Frame::Have(Have {
                stamp: stamp(),
                page: Some(Page {
                    section: Section::Pods,
                    version: 7,
                    index: 0,
                    count: 1,
                    keys: vec![("pod:default/web-0".into(), "{}".into())],
                }),
            }),
            Frame::Sync((0..SYNC_BUCKETS as u32).map(|i| i.wrapping_mul(0x9e37_79b9)).collect()),
            Frame::Versions(vec![Version { name: "a".into(), generation: 5, seq: 3 }]),
            Frame::Stamps(vec![stamp(), Stamp { name: "b".into(), ..stamp() }]),
            Frame::Query(SwimId::new("a", 5, "127.0.0.1:7946".parse().unwrap())),
            Frame::Held(HeldMember {
                id: SwimId::new("a", 5, "127.0.0.1:7946".parse().unwrap()),
                incarnation: 2,
                state: MemberState::Down,
            }),
        ];
        for f in frames {
            assert_eq!(decode(&encode(&f)), Ok(f));
        }
    }

    #[test]
    fn chitchat_frames_are_named_as_such() {
        // A chitchat Syn starts with its tag, 0.
        assert_eq!(decode(&[0, 1, 2, 3]), Err(WireError::NotSwim));
        assert!(WireError::NotSwim.to_string().contains("--membership"));
        assert_eq!(decode(&[MAGIC, 0xee]), Err(WireError::Kind(0xee)));
    }

    #[test]
    fn out_of_bounds_stamped_packets_are_refused() {
        let big = encode_swim(&[0; MAX_SWIM_PACKET + 1], &[stamp()]);
        assert_eq!(decode(&big), Err(WireError::Bounds("foca packet too large")));
        let many = encode_swim(&[1], &vec![stamp(); MAX_STAMPS + 1]);
        assert_eq!(decode(&many), Err(WireError::Bounds("too many stamps")));
        let nameless = encode_swim(&[1], &[Stamp { name: String::new(), ..stamp() }]);
        assert_eq!(decode(&nameless), Err(WireError::Bounds("stamp's node name")));
        let long = encode_swim(&[1], &[Stamp { digest: "f".repeat(MAX_DIGEST + 1), ..stamp() }]);
        assert_eq!(decode(&long), Err(WireError::Bounds("state digest too long")));
        assert_eq!(encode_swim(&[1, 2], &[]), encode(&Frame::Swim(vec![1, 2])), "no stamp: a plain SWIM frame");
    }

    #[test]
    fn out_of_bounds_syncs_are_refused() {
        let short = Frame::Sync(vec![0; SYNC_BUCKETS - 1]);
        assert_eq!(decode(&encode(&short)), Err(WireError::Bounds("sync buckets")));
        let sync = encode(&Frame::Sync(vec![u32::MAX; SYNC_BUCKETS]));
        assert!(sync.len() <= 4 * SYNC_BUCKETS + 4, "{} bytes: a sync stays small", sync.len());
        let v = Version { name: "a".into(), generation: 1, seq: 1 };
        let many = Frame::Versions(vec![v; MAX_VERSIONS + 1]);
        assert_eq!(decode(&encode(&many)), Err(WireError::Bounds("versions")));
        let nameless = Frame::Versions(vec![Version { name: String::new(), generation: 1, seq: 1 }]);
        assert_eq!(decode(&encode(&nameless)), Err(WireError::Bounds("versions")));
        let many = Frame::Stamps(vec![stamp(); MAX_VERSIONS + 1]);
        assert_eq!(decode(&encode(&many)), Err(WireError::Bounds("too many stamps")));
        let nameless = Frame::Stamps(vec![Stamp { name: String::new(), ..stamp() }]);
        assert_eq!(decode(&encode(&nameless)), Err(WireError::Bounds("stamp's node name")));
    }

    #[test]
    fn queries_about_nameless_or_overlong_names_are_refused() {
        let addr: SocketAddr = "127.0.0.1:7946".parse().unwrap();
        for name in [String::new(), "x".repeat(MAX_NAME + 1)] {
            let q = Frame::Query(SwimId::new(&name, 1, addr));
            assert_eq!(decode(&encode(&q)), Err(WireError::Bounds("member name")));
            let h =
                Frame::Held(HeldMember { id: SwimId::new(&name, 1, addr), incarnation: 0, state: MemberState::Alive });
            assert_eq!(decode(&encode(&h)), Err(WireError::Bounds("member name")));
        }
        assert!(matches!(decode(&[MAGIC, QUERY, 0xff]), Err(WireError::Decode(_))));
    }

    #[test]
    fn out_of_bounds_pages_are_refused() {
        let mut h = Have {
            stamp: stamp(),
            page: Some(Page { section: Section::Summary, version: 1, index: 3, count: 3, keys: vec![] }),
        };
        assert!(matches!(decode(&encode(&Frame::Have(h.clone()))), Err(WireError::Bounds(_))));
        h.page = Some(Page { section: Section::Summary, version: 1, index: 0, count: MAX_PAGES + 1, keys: vec![] });
        assert!(matches!(decode(&encode(&Frame::Have(h))), Err(WireError::Bounds(_))));
    }

    #[test]
    fn stamps_order_by_generation_then_sequence() {
        let a = stamp();
        let mut b = a.clone();
        assert!(!b.newer_than(&a), "the same stamp says nothing new");
        b.seq += 1;
        b.pods += 1;
        assert!(b.newer_than(&a) && !a.newer_than(&b));
        let mut c = a.clone();
        c.generation += 1;
        c.seq = 1;
        c.summary = 0;
        c.pods = 0;
        assert!(c.newer_than(&b), "a new generation starts its sequence again");
        // A digest that went d1 -> d2 -> d1 at the same versions: the last
        // word wins, and the stale one never comes back.
        let (mut d1, mut d2) = (a.clone(), a.clone());
        d2.seq += 1;
        d2.digest = "d2".into();
        d1.seq += 2;
        assert!(d1.newer_than(&d2) && !d2.newer_than(&d1));
        assert!(!a.newer_than(&d2), "the first d1 is older than d2");
        let other = Stamp { name: "b".into(), ..b };
        assert!(!other.newer_than(&a));
    }

    #[test]
    fn pages_hold_every_key_once_within_bounds() {
        let keys: Vec<(String, String)> =
            (0..500).map(|i| (format!("pod:default/web-{i}"), "x".repeat(300 + i % 50))).collect();
        let pages = paginate(Section::Pods, 3, &keys).unwrap();
        assert!(pages.len() > 1);
        let back: Vec<(String, String)> = pages.iter().flat_map(|p| p.keys.clone()).collect();
        assert_eq!(back, keys);
        for p in &pages {
            assert_eq!(p.count as usize, pages.len());
            assert!(p.keys.iter().map(|(k, v)| k.len() + v.len() + 8).sum::<usize>() <= MAX_PAGE_BYTES);
            let frame = encode(&Frame::Have(Have { stamp: stamp(), page: Some(p.clone()) }));
            assert!(frame.len() < crate::net::quic::MAX_GOSSIP_FRAME);
        }
        assert_eq!(paginate(Section::Pods, 1, &[]).unwrap().len(), 1, "an empty section is one empty page");
        let huge: Vec<(String, String)> =
            (0..(MAX_PAGES + 1)).map(|i| (i.to_string(), "y".repeat(MAX_PAGE_BYTES))).collect();
        assert!(paginate(Section::Pods, 1, &huge).is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Garbage from a peer never panics the decoder.
        #[test]
        fn decoding_garbage_never_panics(d in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&d);
            let mut framed = vec![MAGIC, (d.len() % 4) as u8];
            framed.extend_from_slice(&d);
            let _ = decode(&framed);
        }
    }
}
