//! What this node holds of every peer under SWIM, and what it must pull:
//! pure (time comes in as an argument).
//!
//! foca says who is a member and in which state; the piggybacked `Stamp`s
//! say which versions of each peer's records exist; the `Have` pages carry
//! the records themselves, pulled from the peer by those that lack them.
//! The book joins the three into the `RawNode`s that `assemble` turns into
//! the view, exactly as chitchat's keys are under `--membership chitchat`
//! (the same `parse_records`, so the same checks).
//!
//! Pulls are bounded: at most `MAX_PULLS` outstanding, one per peer, asked
//! again after `PULL_RETRY`. A stamp lost in gossip is found by the sync:
//! every few seconds a random peer gets this node's versions hashed into
//! buckets (`buckets`) and answers with its versions in the buckets that
//! differ (`differing`); the newer ones are pulled from their owners
//! (`versions_heard`). The answer also carries the stamps behind those
//! versions (`differing_stamps`): a node that does not hold a member at
//! all (SWIM spreads changes only, so a new node can miss one that has
//! not changed) learns its address and announces itself there (`stamp`).
//! At rest that costs one small exchange per node per round whatever the
//! cluster's size; a stamp one node missed is found in about one round, as
//! nearly every peer holds it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;
use tokio::time::Instant;

use super::id::SwimId;
use super::wire::{Have, MAX_VERSIONS, Page, SYNC_BUCKETS, Section, Stamp, Version, Want, paginate};
use crate::membership::assemble::{RawNode, Records, keys, parse_records};
use crate::membership::view::NodeState;

/// Most `Want`s outstanding at once (a node that just joined a large
/// cluster pulls everyone's records a batch at a time).
pub const MAX_PULLS: usize = 64;

/// A `Want` not answered after this long is sent again.
pub const PULL_RETRY: Duration = Duration::from_secs(1);

/// A node known from its stamp only (SWIM has not named it) is announced
/// to every `PULL_RETRY`, and forgotten after this long.
pub const UNNAMED_TTL: Duration = Duration::from_secs(30);

/// What to send to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pull {
    /// Ask it for its records.
    Want(SocketAddr, Want),
    /// Announce this node to it (a SWIM join): it answers with itself and
    /// some members.
    Announce(SocketAddr),
}

/// The version of a section held (its keys are parsed into the peer).
#[derive(Debug, Default, Clone, Copy)]
struct Held {
    version: u64,
}

/// Pages of one section's version, as they arrive.
#[derive(Debug, Clone)]
struct Partial {
    version: u64,
    pages: Vec<Option<Vec<(String, String)>>>,
}

#[derive(Debug, Clone)]
struct Peer {
    /// Its SWIM identity (where to pull from); `None` until foca names it.
    id: Option<SwimId>,
    state: NodeState,
    stamp: Stamp,
    summary: Held,
    pods: Held,
    partial: [Option<Partial>; 2],
    /// The summary parsed (info, extra keys) and the pods parsed.
    parsed: Records,
    pods_parsed: crate::model::status::PeerPods,
    /// Keys that did not parse, in the summary and in the pods section.
    malformed: [usize; 2],
    records: Arc<Records>,
    asked: Option<Instant>,
    /// A newer stamp (generation, sequence) a sync found elsewhere.
    newer: Option<(u64, u64)>,
    /// When it was first heard of while unnamed by SWIM.
    unnamed_since: Option<Instant>,
    /// The last scan of SWIM's members that named it (see `end_scan`).
    scanned: u64,
}

impl Peer {
    fn new(stamp: Stamp) -> Peer {
        Peer {
            id: None,
            state: NodeState::Ready,
            stamp,
            summary: Held::default(),
            pods: Held::default(),
            partial: [None, None],
            parsed: Records::default(),
            pods_parsed: Arc::default(),
            malformed: [0, 0],
            records: Arc::default(),
            asked: None,
            newer: None,
            unnamed_since: None,
            scanned: 0,
        }
    }

    fn compose(&mut self) {
        self.records = Arc::new(Records {
            info: self.parsed.info.clone(),
            left: self.stamp.left,
            pods: self.pods_parsed.clone(),
            digest: self.stamp.digest.as_str().into(),
            extra: self.parsed.extra.clone(),
            claims: BTreeMap::new(),
            malformed: self.malformed.iter().sum(),
        });
    }

    /// Whether its records are behind its stamp, or its stamp is unknown
    /// (every node publishes a summary at start: a member whose stamp was
    /// gossiped before this node joined is asked for it).
    fn lacks(&self) -> bool {
        self.stamp.summary == 0
            || self.summary.version < self.stamp.summary
            || self.pods.version < self.stamp.pods
            || self.newer.is_some_and(|v| v > (self.stamp.generation, self.stamp.seq))
    }

    fn want(&self) -> Want {
        Want { generation: self.stamp.generation, summary: self.summary.version, pods: self.pods.version }
    }
}

/// Which sync bucket a node's versions fall in.
fn bucket_of(name: &str) -> usize {
    (fnv1a(name.as_bytes(), FNV_OFFSET) % SYNC_BUCKETS as u64) as usize
}

/// A stamp version's share of its bucket's hash (the same on every
/// platform and build: FNV-1a, then a 64-bit finaliser).
fn version_hash(s: &Stamp) -> u32 {
    let mut h = fnv1a(s.name.as_bytes(), FNV_OFFSET);
    h = fnv1a(&s.generation.to_le_bytes(), h);
    h = fnv1a(&s.seq.to_le_bytes(), h);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    (h ^ (h >> 32)) as u32
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Every peer's records as this node holds them.
#[derive(Debug, Default)]
pub struct Book {
    me: String,
    /// By name; a hash map, as a scan of SWIM's members looks up every
    /// peer every second (no caller reads their order; `raw` sorts). Boxed:
    /// a hash map keeps spare slots, and a spare `Peer` is large.
    peers: FxHashMap<String, Entry>,
    /// Peers that may need a pull or an announce (a superset: `pulls`
    /// drops those that do not), so a round costs nothing per peer at rest.
    wanting: std::collections::BTreeSet<String>,
    /// Peers whose entry in the view may have changed since `take_changed`
    /// (a superset: `assemble` keeps what did not change).
    changed: std::collections::BTreeSet<String>,
    /// Pages refused (stale version, unknown peer, not asked for).
    pub stale_pages: u64,
    /// The current scan of SWIM's members, and how many peers it named.
    scan: u64,
    named: usize,
    /// The buckets' sums of what the synced peers (alive, named by SWIM)
    /// add to a sync (`Entry::sync`), kept as peers change (`resync`): a
    /// sync, its answer and the pick of a peer to ask read them every
    /// round, and a read of every peer each time was a tenth of a
    /// 1,000-node netsim run.
    sums: [u32; SYNC_BUCKETS],
    /// The synced peers' addresses, gathered at the first pick after one
    /// joined, left or was renamed.
    addrs: std::cell::OnceCell<Vec<SocketAddr>>,
}

/// A peer held, with what it adds to the sync (kept beside the box, so
/// that a sync's answer reads the buckets of every peer without reading
/// every peer).
#[derive(Debug)]
struct Entry {
    sync: Option<InSync>,
    peer: Box<Peer>,
}

impl Entry {
    fn new(peer: Peer) -> Entry {
        Entry { sync: None, peer: Box::new(peer) }
    }
}

impl std::ops::Deref for Entry {
    type Target = Peer;
    fn deref(&self) -> &Peer {
        &self.peer
    }
}

impl std::ops::DerefMut for Entry {
    fn deref_mut(&mut self) -> &mut Peer {
        &mut self.peer
    }
}

/// What a synced peer adds to a sync: its version's hash, in its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InSync {
    bucket: u8,
    hash: u32,
}

fn empty_stamp(name: &str, generation: u64, addr: SocketAddr) -> Stamp {
    Stamp { name: name.to_string(), generation, addr, seq: 0, summary: 0, pods: 0, left: false, digest: String::new() }
}

impl Book {
    pub fn new(me: &str) -> Book {
        Book { me: me.to_string(), ..Default::default() }
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// foca's word on a member: its newest identity and state. An older
    /// generation than the one held is ignored; a newer one starts afresh.
    pub fn member(&mut self, id: &SwimId, state: NodeState) -> bool {
        if id.name == self.me || id.name.is_empty() {
            return false;
        }
        if !self.peers.contains_key(id.name.as_str()) {
            self.peers
                .insert(id.name.to_string(), Entry::new(Peer::new(empty_stamp(&id.name, id.generation, id.addr))));
        }
        let Some(p) = self.peers.get_mut(id.name.as_str()) else { return false };
        if p.scanned != self.scan {
            p.scanned = self.scan;
            self.named += 1;
        }
        if id.generation < p.stamp.generation {
            return false;
        }
        // Where a sync may pick it now (a new generation forgets it).
        let reached = p.id.as_ref().map(|o| o.addr);
        if id.generation > p.stamp.generation {
            **p = Peer::new(empty_stamp(&id.name, id.generation, id.addr));
            p.scanned = self.scan;
        }
        if p.id.as_ref().is_some_and(|old| old.generation == id.generation && old.bump > id.bump) {
            // An older identity of this generation (down, superseded by its rejoin).
            return false;
        }
        // `p.id`, when known, has `id`'s name (peers are kept by name): the
        // rest tells them apart without reading either name (a scan reads
        // every member each second: at 1,000 nodes this function was 31 %
        // of a quiet cluster's time, a third of it comparing names).
        debug_assert!(p.id.as_ref().is_none_or(|o| o.name == id.name));
        let same_id =
            p.id.as_ref().is_some_and(|o| (o.generation, o.bump, o.addr) == (id.generation, id.bump, id.addr));
        let changed = p.state != state || !same_id;
        if p.id.is_none() {
            // Named at last: ask for its records now, not after the announce's retry.
            p.asked = None;
        }
        if changed {
            if reached.is_some_and(|a| a != id.addr) {
                // Moved: a sync must not pick its old address.
                self.addrs.take();
            }
            p.id = Some(id.clone());
            p.state = state;
            if p.lacks() {
                self.wanting.insert(id.name.to_string());
            }
            self.changed.insert(id.name.to_string());
            self.resync(&id.name);
        }
        changed
    }

    /// A stamp heard (gossip or an answer): whether it is news.
    pub fn stamp(&mut self, s: &Stamp) -> bool {
        if s.name == self.me || s.name.is_empty() {
            return false;
        }
        let news = self.stamp_news(s);
        if news {
            self.changed.insert(s.name.clone());
            self.resync(&s.name);
        }
        news
    }

    fn stamp_news(&mut self, s: &Stamp) -> bool {
        match self.peers.get_mut(&s.name) {
            None => {
                let mut p = Peer::new(s.clone());
                p.compose();
                self.peers.insert(s.name.clone(), Entry::new(p));
                self.wanting.insert(s.name.clone());
                true
            }
            Some(p) if s.generation > p.stamp.generation => {
                let mut fresh = Peer::new(s.clone());
                // Its identity is still foca's to give (the old one's address
                // is likely the new one's: keep it to pull from meanwhile).
                fresh.id = p.id.clone().map(|id| SwimId { generation: s.generation, bump: 0, ..id });
                fresh.compose();
                **p = fresh;
                self.wanting.insert(s.name.clone());
                true
            }
            Some(p) if s.newer_than(&p.stamp) => {
                let (left, digest) = (p.stamp.left, p.stamp.digest.clone());
                p.stamp = s.clone();
                if p.stamp.left != left || p.stamp.digest != digest {
                    p.compose();
                }
                if p.lacks() {
                    self.wanting.insert(s.name.clone());
                }
                true
            }
            Some(_) => false,
        }
    }

    /// A page from `from`'s answer (after its stamp was applied): whether
    /// it completed a section (the peer's records changed).
    pub fn page(&mut self, from: &str, page: Page) -> bool {
        let Some(p) = self.peers.get_mut(from) else {
            self.stale_pages += 1;
            return false;
        };
        let i = match page.section {
            Section::Summary => 0,
            Section::Pods => 1,
        };
        let (held, target) = match page.section {
            Section::Summary => (p.summary.version, p.stamp.summary),
            Section::Pods => (p.pods.version, p.stamp.pods),
        };
        if page.version <= held || page.version != target {
            self.stale_pages += 1;
            return false;
        }
        let partial = p.partial[i].get_or_insert_with(|| Partial { version: page.version, pages: Vec::new() });
        if partial.version != page.version || partial.pages.len() != page.count as usize {
            *partial = Partial { version: page.version, pages: vec![None; page.count as usize] };
        }
        partial.pages[page.index as usize] = Some(page.keys);
        if partial.pages.iter().any(Option::is_none) {
            return false;
        }
        let Some(done) = p.partial[i].take() else { return false };
        let keys: Vec<(String, String)> = done.pages.into_iter().flatten().flatten().collect();
        let parsed = parse_records(keys.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        match page.section {
            Section::Summary => {
                // Only the summary's own keys count (a peer sending pods or
                // claims in its summary is ignored, as garbage would be).
                p.parsed = Records { info: parsed.info, extra: parsed.extra, ..Records::default() };
                p.summary = Held { version: done.version };
            }
            Section::Pods => {
                p.pods_parsed = parsed.pods;
                p.pods = Held { version: done.version };
            }
        }
        p.malformed[i] = parsed.malformed;
        p.compose();
        // Answered: what is still lacking (a newer stamp meanwhile) is
        // asked for at the next round, not after `PULL_RETRY`.
        p.asked = None;
        self.changed.insert(from.to_string());
        true
    }

    /// The pulls to send now: peers whose stamp is ahead of what is held,
    /// alive, with an address, not asked within `PULL_RETRY`; at most
    /// `MAX_PULLS` outstanding. Peers SWIM has not named yet are announced
    /// to instead.
    pub fn pulls(&mut self, now: Instant) -> Vec<Pull> {
        let recent = |a: Option<Instant>| a.is_some_and(|a| now.saturating_duration_since(a) < PULL_RETRY);
        let outstanding = self.wanting.iter().filter(|n| self.peers.get(*n).is_some_and(|p| recent(p.asked))).count();
        let mut budget = MAX_PULLS.saturating_sub(outstanding);
        let mut out = Vec::new();
        let mut done = Vec::new();
        for name in &self.wanting {
            if budget == 0 {
                break;
            }
            let Some(p) = self.peers.get_mut(name) else {
                done.push(name.clone());
                continue;
            };
            if recent(p.asked) {
                continue;
            }
            match &p.id {
                None => {
                    p.unnamed_since.get_or_insert(now);
                    out.push(Pull::Announce(p.stamp.addr));
                }
                Some(id) if p.state.alive() && p.lacks() => out.push(Pull::Want(id.addr, p.want())),
                // Up to date, or dead: `member` and `stamp` bring it back.
                Some(_) => {
                    done.push(name.clone());
                    continue;
                }
            }
            p.asked = Some(now);
            budget -= 1;
        }
        for n in done {
            self.wanting.remove(&n);
        }
        out
    }

    /// Brings `name`'s share of the sync up to date with its entry (or
    /// its absence): called after every change to a peer's stamp, state
    /// or identity, and after a peer is forgotten.
    fn resync(&mut self, name: &str) {
        let Some(p) = self.peers.get_mut(name) else { return };
        let now = (p.state.alive() && p.id.is_some())
            .then(|| InSync { bucket: bucket_of(name) as u8, hash: version_hash(&p.stamp) });
        if now == p.sync {
            return;
        }
        if let Some(w) = p.sync {
            self.sums[usize::from(w.bucket)] ^= w.hash;
        }
        if let Some(n) = now {
            self.sums[usize::from(n.bucket)] ^= n.hash;
        }
        if p.sync.is_some() != now.is_some() {
            self.addrs.take();
        }
        p.sync = now;
    }

    /// The address of the `pick`-th (modulo their number) peer a sync
    /// covers (alive and named by SWIM): the caller draws `pick` at random.
    pub fn sync_peer(&self, pick: usize) -> Option<SocketAddr> {
        let addrs = self.addrs.get_or_init(|| {
            self.peers.values().filter(|p| p.sync.is_some()).filter_map(|p| p.id.as_ref().map(|i| i.addr)).collect()
        });
        addrs.get(pick.checked_rem(addrs.len())?).copied()
    }

    /// This node's versions (its own stamp's and every synced peer's)
    /// hashed into `SYNC_BUCKETS` buckets: equal on two nodes that hold
    /// the same stamps of the same nodes.
    pub fn buckets(&self, own: &Stamp) -> Vec<u32> {
        let mut b = self.sums.to_vec();
        b[bucket_of(&own.name)] ^= version_hash(own);
        b
    }

    /// The versions this node holds in the buckets where `theirs` differs
    /// from its own (none when they are equal or malformed). At most
    /// `MAX_VERSIONS`, taken from the `start`-th on (modulo their number,
    /// wrapping): a caller that draws `start` at random covers, over a few
    /// syncs, a differing bucket larger than one answer.
    pub fn differing(&self, own: &Stamp, theirs: &[u32], start: usize) -> Vec<Version> {
        self.differing_stamps(own, theirs, start).into_iter().map(Stamp::version).collect()
    }

    /// The stamps behind `differing`'s versions (the same ones, in the
    /// same order): with their nodes' addresses, for an asker that does
    /// not hold some of them at all.
    pub fn differing_stamps<'a>(&'a self, own: &'a Stamp, theirs: &[u32], start: usize) -> Vec<&'a Stamp> {
        let mine = self.buckets(own);
        if theirs.len() != mine.len() {
            return Vec::new();
        }
        let own_bucket = bucket_of(&own.name);
        let all: Vec<&Stamp> = (mine[own_bucket] != theirs[own_bucket])
            .then_some(own)
            .into_iter()
            .chain(self.peers.values().filter_map(|p| {
                let b = usize::from(p.sync?.bucket);
                (mine[b] != theirs[b]).then_some(&p.stamp)
            }))
            .collect();
        let Some(start) = start.checked_rem(all.len()) else { return Vec::new() };
        all[start..].iter().chain(&all[..start]).take(MAX_VERSIONS).copied().collect()
    }

    /// The node itself answered a pull: its stamp is the word on its
    /// versions, whatever a sync claimed (a peer reporting a version that
    /// never existed does not keep this node pulling).
    pub fn owner_answered(&mut self, name: &str) {
        if let Some(p) = self.peers.get_mut(name) {
            p.newer = None;
        }
    }

    /// Versions a peer holds: those newer than this node's are pulled from
    /// their owners at the next round. Whether any was newer.
    pub fn versions_heard(&mut self, versions: &[Version]) -> bool {
        let mut any = false;
        for v in versions {
            let Some(p) = self.peers.get_mut(&v.name) else { continue };
            let theirs = (v.generation, v.seq);
            if v.name == self.me || theirs <= (p.stamp.generation, p.stamp.seq) || p.newer >= Some(theirs) {
                continue;
            }
            p.newer = Some(theirs);
            p.asked = None;
            self.wanting.insert(v.name.clone());
            any = true;
        }
        any
    }

    /// Starts a scan of SWIM's members: each is passed to `member`, then
    /// `end_scan` forgets the peers none of them named.
    pub fn begin_scan(&mut self) {
        self.scan += 1;
        self.named = 0;
    }

    /// Whether the last scan named every peer held (its `end_scan` had
    /// nothing to forget, nor any unnamed peer to time out).
    pub fn all_named(&self) -> bool {
        self.peers.len() <= self.named
    }

    /// Ends a scan: keeps the peers this scan named, and the unnamed ones
    /// heard of within `UNNAMED_TTL`. Whether any was forgotten.
    pub fn end_scan(&mut self, now: Instant) -> bool {
        if self.peers.len() <= self.named {
            return false;
        }
        let (changed, sums, scan) = (&mut self.changed, &mut self.sums, self.scan);
        let before = self.peers.len();
        self.peers.retain(|n, p| {
            let kept = match p.id {
                Some(_) => p.scanned == scan,
                None => p.unnamed_since.is_none_or(|t| now.saturating_duration_since(t) < UNNAMED_TTL),
            };
            if !kept {
                changed.insert(n.clone());
                if let Some(w) = p.sync {
                    sums[usize::from(w.bucket)] ^= w.hash;
                }
            }
            kept
        });
        let forgot = self.peers.len() < before;
        if forgot {
            self.addrs.take();
        }
        forgot
    }

    /// The members foca has not named yet (known from a stamp only) do not
    /// count: a node is in the view once membership knows it. In name order.
    pub fn raw(&self) -> Vec<RawNode> {
        let mut peers: Vec<&Peer> = self.peers.values().map(|p| &**p).collect();
        peers.sort_by(|a, b| a.stamp.name.cmp(&b.stamp.name));
        peers.into_iter().filter_map(raw_of).collect()
    }

    /// The peers that may have changed since the last call, each with its
    /// entry now (`None`: not in the view), for `assemble`'s `Peers::Changed`.
    pub fn take_changed(&mut self) -> Vec<(String, Option<RawNode>)> {
        let names = std::mem::take(&mut self.changed);
        names
            .into_iter()
            .map(|n| {
                let raw = self.peers.get(&n).and_then(|p| raw_of(p));
                (n, raw)
            })
            .collect()
    }

    /// The address of a peer by name (its newest identity).
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.peers.get(name)?.id.as_ref().map(|i| i.addr)
    }
}

/// A peer as `assemble` takes it, once SWIM has named it.
fn raw_of(p: &Peer) -> Option<RawNode> {
    p.id.as_ref()?;
    Some(RawNode {
        name: p.stamp.name.clone(),
        generation: p.stamp.generation,
        state: p.state,
        records: p.records.clone(),
    })
}

/// This node's own records, versioned, as peers pull them.
#[derive(Debug, Clone)]
pub struct Own {
    pub stamp: Stamp,
    summary: Vec<Page>,
    pods: Vec<Page>,
    summary_keys: Vec<(String, String)>,
    pods_keys: Vec<(String, String)>,
    /// Set when a section outgrew `MAX_PAGES` (its old version stays).
    pub too_large: Option<Section>,
}

impl Own {
    pub fn new(name: &str, generation: u64, addr: SocketAddr) -> Own {
        Own {
            stamp: empty_stamp(name, generation, addr),
            summary: Vec::new(),
            pods: Vec::new(),
            summary_keys: Vec::new(),
            pods_keys: Vec::new(),
            too_large: None,
        }
    }

    /// Sets this node's keys (chitchat's: `info`, `pod:*`, the state digest
    /// and extra keys); returns whether the stamp changed.
    pub fn set(&mut self, all: BTreeMap<String, String>, left: bool) -> bool {
        let before = self.stamp.clone();
        let mut summary = Vec::new();
        let mut pods = Vec::new();
        let mut digest = String::new();
        for (k, v) in all {
            if k == keys::STATE_DIGEST {
                digest = v;
            } else if k.starts_with(keys::POD) {
                pods.push((k, v));
            } else if k != keys::LEFT && !k.starts_with(keys::DOWN) {
                summary.push((k, v));
            }
        }
        self.stamp.digest = digest;
        self.stamp.left |= left;
        self.too_large = None;
        for (section, new) in [(Section::Summary, summary), (Section::Pods, pods)] {
            let (held, pages, version) = match section {
                Section::Summary => (&mut self.summary_keys, &mut self.summary, &mut self.stamp.summary),
                Section::Pods => (&mut self.pods_keys, &mut self.pods, &mut self.stamp.pods),
            };
            if *held == new && *version > 0 {
                continue;
            }
            match paginate(section, *version + 1, &new) {
                Some(p) => {
                    *pages = p;
                    *held = new;
                    *version += 1;
                }
                None => self.too_large = Some(section),
            }
        }
        let changed = self.stamp != before;
        if changed {
            self.stamp.seq += 1;
        }
        changed
    }

    /// The answer to a peer's `Want`: every page it lacks, each with the
    /// stamp; just the stamp when it lacks nothing.
    pub fn answer(&self, want: &Want) -> Vec<Have> {
        let same = want.generation == self.stamp.generation;
        let mut out = Vec::new();
        for (held, version, pages) in
            [(want.summary, self.stamp.summary, &self.summary), (want.pods, self.stamp.pods, &self.pods)]
        {
            if version > 0 && (!same || held < version) {
                out.extend(pages.iter().map(|p| Have { stamp: self.stamp.clone(), page: Some(p.clone()) }));
            }
        }
        if out.is_empty() {
            out.push(Have { stamp: self.stamp.clone(), page: None });
        }
        out
    }
}

#[cfg(test)]
#[path = "book_tests.rs"]
mod tests;
