use super::*;
use crate::membership::view::NodeInfo;
use crate::model::status::PodStatus;

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, i], 7421))
}

fn keys_of(name: &str, generation: u64, pods: usize) -> BTreeMap<String, String> {
    let info = NodeInfo { name: name.into(), generation, ..Default::default() };
    let mut all = BTreeMap::new();
    all.insert(keys::INFO.to_string(), serde_json::to_string(&info).unwrap());
    all.insert(keys::STATE_DIGEST.to_string(), "d1".to_string());
    for i in 0..pods {
        let p = PodStatus { namespace: "default".into(), name: format!("web-{i}"), ..Default::default() };
        all.insert(format!("{}{}", keys::POD, p.id()), serde_json::to_string(&p).unwrap());
    }
    all
}

/// Runs one pull round trip from `book` to `own` (every answer delivered).
fn pull(book: &mut Book, own: &Own, now: Instant) -> usize {
    let wants = book.pulls(now);
    let n = wants.len();
    for w in wants {
        let Pull::Want(_, w) = w else { panic!("an unnamed peer in a test of pulls") };
        for have in own.answer(&w) {
            book.stamp(&have.stamp);
            if let Some(p) = have.page {
                book.page(&have.stamp.name, p);
            }
        }
    }
    n
}

#[test]
fn a_peers_records_are_pulled_once_and_assembled() {
    let mut own = Own::new("a", 5, addr(11));
    assert!(own.set(keys_of("a", 5, 3), false));
    let mut book = Book::new("me");
    book.member(&SwimId::new("a", 5, addr(11)), NodeState::Ready);
    assert!(book.stamp(&own.stamp), "a first stamp is news");
    assert!(!book.stamp(&own.stamp), "the same stamp twice is not");
    let now = Instant::now();
    assert_eq!(pull(&mut book, &own, now), 1);
    let raw = book.raw();
    assert_eq!(raw.len(), 1);
    let r = &raw[0].records;
    assert_eq!(r.info.as_ref().unwrap().name, "a");
    assert_eq!(r.pods.len(), 3);
    assert_eq!(&*r.digest, "d1");
    assert_eq!(r.malformed, 0);
    assert!(book.pulls(now + PULL_RETRY * 2).is_empty(), "nothing is pulled while nothing changes");
    // A pod changes: only the pods section moves on.
    let before = own.stamp.clone();
    let mut all = keys_of("a", 5, 4);
    assert!(own.set(all.clone(), false));
    assert_eq!((own.stamp.summary, own.stamp.pods), (before.summary, before.pods + 1));
    assert!(!own.set(all.clone(), false), "the same keys keep their versions");
    all.insert(keys::STATE_DIGEST.to_string(), "d2".into());
    assert!(own.set(all, false), "a new digest is a new stamp, without a new version");
    assert_eq!(own.stamp.pods, before.pods + 1);
    book.stamp(&own.stamp);
    let wants = book.pulls(now);
    let [Pull::Want(_, want)] = &wants[..] else { panic!("one want expected: {wants:?}") };
    let answer = own.answer(want);
    assert!(answer.iter().all(|h| h.page.as_ref().is_some_and(|p| p.section == Section::Pods)));
    for h in answer {
        book.page("a", h.page.unwrap());
    }
    let r = &book.raw()[0].records;
    assert_eq!((r.pods.len(), &*r.digest), (4, "d2"));
}

#[test]
fn an_answer_to_a_peer_lacking_nothing_is_the_stamp_alone() {
    let mut own = Own::new("a", 5, addr(11));
    own.set(keys_of("a", 5, 1), false);
    let w = Want { generation: 5, summary: own.stamp.summary, pods: own.stamp.pods };
    assert_eq!(own.answer(&w), vec![Have { stamp: own.stamp.clone(), page: None }]);
    let other_generation = Want { generation: 4, ..w };
    assert_eq!(own.answer(&other_generation).len(), 2, "versions of another generation count for nothing");
}

#[test]
fn a_large_section_arrives_in_pages_and_counts_only_when_whole() {
    let mut own = Own::new("a", 5, addr(11));
    own.set(keys_of("a", 5, 400), false);
    let mut book = Book::new("me");
    book.member(&SwimId::new("a", 5, addr(11)), NodeState::Ready);
    book.stamp(&own.stamp);
    let Some(Pull::Want(_, want)) = book.pulls(Instant::now()).pop() else { panic!("a want expected") };
    let pages: Vec<Page> = own.answer(&want).into_iter().filter_map(|h| h.page).collect();
    let pods: Vec<&Page> = pages.iter().filter(|p| p.section == Section::Pods).collect();
    assert!(pods.len() > 1, "400 statuses take several pages");
    let last_pod_page = pages.iter().rposition(|p| p.section == Section::Pods).unwrap();
    for (i, p) in pages.iter().enumerate() {
        if i + 1 == pages.len() {
            assert!(book.raw()[0].records.pods.is_empty(), "no pod is shown before the last page");
        }
        let completes = book.page("a", p.clone());
        let last_of_its_section = i == last_pod_page || (p.section == Section::Summary && p.index + 1 == p.count);
        assert_eq!(completes, last_of_its_section, "page {i}: only a section's last page changes the records");
    }
    assert_eq!(book.raw()[0].records.pods.len(), 400);
}

#[test]
fn stale_and_unasked_pages_are_refused() {
    let mut own = Own::new("a", 5, addr(11));
    own.set(keys_of("a", 5, 1), false);
    let old = own.answer(&Want { generation: 0, summary: 0, pods: 0 });
    own.set(keys_of("a", 5, 2), false);
    let mut book = Book::new("me");
    book.member(&SwimId::new("a", 5, addr(11)), NodeState::Ready);
    book.stamp(&own.stamp);
    for h in old.iter().filter(|h| h.page.as_ref().is_some_and(|p| p.section == Section::Pods)) {
        assert!(!book.page("a", h.page.clone().unwrap()), "a refused page changes nothing");
    }
    assert!(book.raw()[0].records.pods.is_empty(), "a page of an older version than the stamp's is refused");
    assert_eq!(book.stale_pages, 1);
    book.page("nobody", old[0].page.clone().unwrap());
    assert_eq!(book.stale_pages, 2);
}

#[test]
fn a_new_generation_starts_afresh_and_an_old_one_is_ignored() {
    let mut book = Book::new("me");
    let mut own = Own::new("a", 5, addr(11));
    own.set(keys_of("a", 5, 2), false);
    book.member(&SwimId::new("a", 5, addr(11)), NodeState::Ready);
    book.stamp(&own.stamp);
    pull(&mut book, &own, Instant::now());
    assert_eq!(book.raw()[0].records.pods.len(), 2);
    book.member(&SwimId::new("a", 5, addr(11)), NodeState::Dead);
    assert_eq!(book.raw()[0].state, NodeState::Dead);
    let mut own6 = Own::new("a", 6, addr(11));
    own6.set(keys_of("a", 6, 0), false);
    assert!(book.member(&SwimId::new("a", 6, addr(11)), NodeState::Ready));
    assert!(book.raw()[0].records.info.is_none(), "the new generation's records are not its predecessor's");
    assert!(!book.member(&SwimId::new("a", 5, addr(11)), NodeState::Dead), "the old generation is history");
    assert_eq!((book.raw()[0].generation, book.raw()[0].state), (6, NodeState::Ready));
    book.stamp(&own6.stamp);
    pull(&mut book, &own6, Instant::now());
    assert_eq!(book.raw()[0].records.info.as_ref().unwrap().generation, 6);
}

#[test]
fn a_rejoined_identity_supersedes_its_down_self() {
    use foca::Identity;
    let mut book = Book::new("me");
    let old = SwimId::new("a", 5, addr(11));
    let rejoined = old.renew().unwrap();
    book.member(&rejoined, NodeState::Ready);
    assert!(!book.member(&old, NodeState::Dead), "the down identity it replaced says nothing");
    assert_eq!(book.raw()[0].state, NodeState::Ready);
}

#[test]
fn pulls_are_bounded_and_retried() {
    let mut book = Book::new("me");
    for i in 0..100u8 {
        let name = format!("n{i}");
        let mut own = Own::new(&name, 1, addr(11));
        own.set(keys_of(&name, 1, 0), false);
        book.member(&SwimId::new(&name, 1, SocketAddr::from(([127, 0, 1, i], 7421))), NodeState::Ready);
        book.stamp(&own.stamp);
    }
    let t0 = Instant::now();
    assert_eq!(book.pulls(t0).len(), MAX_PULLS);
    assert_eq!(book.pulls(t0).len(), 0, "no more than MAX_PULLS outstanding");
    assert_eq!(book.pulls(t0 + PULL_RETRY).len(), MAX_PULLS, "unanswered pulls are sent again");
    let dead = SwimId::new("n0", 1, SocketAddr::from(([127, 0, 1, 0], 7421)));
    book.member(&dead, NodeState::Dead);
    assert!(
        book.pulls(t0 + PULL_RETRY * 3)
            .iter()
            .all(|p| *p != Pull::Want(dead.addr, Want { generation: 1, summary: 0, pods: 0 })),
        "the dead are not asked"
    );
}

/// Two books that know the same five peers, each peer's stamp applied.
fn books_in_step() -> (Book, Own, Book, Own, Vec<Own>) {
    let (mut a, mut b) = (Book::new("me"), Book::new("you"));
    let mut me = Own::new("me", 1, addr(2));
    me.set(keys_of("me", 1, 0), false);
    let mut you = Own::new("you", 1, addr(3));
    you.set(keys_of("you", 1, 0), false);
    a.member(&SwimId::new("you", 1, addr(3)), NodeState::Ready);
    a.stamp(&you.stamp);
    b.member(&SwimId::new("me", 1, addr(2)), NodeState::Ready);
    b.stamp(&me.stamp);
    let mut peers = Vec::new();
    for i in 1..=5u8 {
        let name = format!("n{i}");
        let mut own = Own::new(&name, 1, addr(10 + i));
        own.set(keys_of(&name, 1, 1), false);
        for book in [&mut a, &mut b] {
            book.member(&SwimId::new(&name, 1, addr(10 + i)), NodeState::Ready);
            book.stamp(&own.stamp);
        }
        peers.push(own);
    }
    let everyone: Vec<&Own> = peers.iter().chain([&me, &you]).collect();
    for book in [&mut a, &mut b] {
        for w in book.pulls(Instant::now()) {
            let Pull::Want(to, w) = w else { panic!("every peer is named") };
            let own = everyone.iter().find(|o| o.stamp.addr == to).expect("a known peer");
            for have in own.answer(&w) {
                book.stamp(&have.stamp);
                if let Some(p) = have.page {
                    book.page(&have.stamp.name, p);
                }
            }
        }
    }
    (a, me, b, you, peers)
}

#[test]
fn a_sync_finds_the_stamp_one_node_missed_and_it_is_pulled_from_its_owner() {
    let (mut a, me, mut b, you, mut peers) = books_in_step();
    assert_eq!(a.buckets(&me.stamp), b.buckets(&you.stamp), "the same stamps of the same nodes hash alike");
    assert!(b.differing(&you.stamp, &a.buckets(&me.stamp), 0).is_empty(), "nothing differs: nothing to answer");
    // n3 changes; b hears of it, a misses it.
    peers[2].set(keys_of("n3", 1, 2), false);
    b.stamp(&peers[2].stamp);
    let answer = b.differing(&you.stamp, &a.buckets(&me.stamp), 0);
    let n3 = answer.iter().find(|v| v.name == "n3").expect("n3's bucket differs");
    assert_eq!((n3.generation, n3.seq), (1, peers[2].stamp.seq));
    assert!(answer.len() < 7, "only the differing buckets are listed: {answer:?}");
    let now = Instant::now();
    assert!(a.pulls(now).is_empty(), "in step: nothing to pull");
    assert!(a.versions_heard(&answer), "a newer version is news");
    assert!(!a.versions_heard(&answer), "the same versions twice are not");
    let wants = a.pulls(now);
    let want = Want { generation: 1, summary: 1, pods: 1 };
    assert_eq!(wants, vec![Pull::Want(addr(13), want.clone())], "asked of n3 itself, for what changed");
    for have in peers[2].answer(&want) {
        a.stamp(&have.stamp);
        if let Some(p) = have.page {
            a.page("n3", p);
        }
    }
    assert_eq!(a.buckets(&me.stamp), b.buckets(&you.stamp), "in step again");
    assert!(a.pulls(now + PULL_RETRY * 2).is_empty(), "nothing more to pull");
}

#[test]
fn a_sync_answer_is_bounded_and_ignores_what_is_not_newer() {
    let (mut a, _, b, you, _) = books_in_step();
    assert!(b.differing(&you.stamp, &[0; 3], 0).is_empty(), "a malformed sync gets no answer");
    let all = b.differing(&you.stamp, &[0; SYNC_BUCKETS], 5);
    assert_eq!(all.len(), 7, "every bucket differs: every version (its own too)");
    let mut big = Book::new("big");
    for i in 0..200u32 {
        let name = format!("p{i}");
        let mut own = Own::new(&name, 1, SocketAddr::from(([127, 1, (i / 250) as u8, (i % 250) as u8], 7421)));
        own.set(keys_of(&name, 1, 0), false);
        big.member(&SwimId::new(&name, 1, own.stamp.addr), NodeState::Ready);
        big.stamp(&own.stamp);
    }
    let own = Own::new("big", 1, addr(9)).stamp;
    assert_eq!(big.differing(&own, &[0; SYNC_BUCKETS], 0).len(), MAX_VERSIONS);
    // Answers starting at different places cover every version between them.
    let mut covered = std::collections::BTreeSet::new();
    for start in (0..201).step_by(MAX_VERSIONS) {
        covered.extend(big.differing(&own, &[0; SYNC_BUCKETS], start).into_iter().map(|v| v.name));
    }
    assert_eq!(covered.len(), 201, "200 peers and its own stamp");
    let older: Vec<Version> = all.iter().map(|v| Version { seq: v.seq.saturating_sub(1), ..v.clone() }).collect();
    assert!(!a.versions_heard(&older), "older versions are not news");
    // A version that never existed: pulled once, then the owner's answer
    // is the word on it.
    let bogus = Version { name: "n2".into(), generation: 1, seq: 999 };
    assert!(a.versions_heard(std::slice::from_ref(&bogus)));
    let now = Instant::now();
    assert_eq!(a.pulls(now).len(), 1, "n2 is asked");
    a.owner_answered("n2");
    assert!(a.pulls(now + PULL_RETRY * 2).is_empty(), "and not again once it answered");
    assert!(!a.versions_heard(&[Version { name: "nobody".into(), generation: 9, seq: 9 }]), "nor unknown nodes");
    assert!(a.sync_peer(0).is_some() && Book::new("alone").sync_peer(3).is_none());
}

#[test]
fn a_node_that_lacks_a_member_learns_where_it_is_from_a_sync_answer() {
    // `b` holds six peers; a new node holds none of them (SWIM spreads
    // changes only: a member that does not change reaches a new node in a
    // Feed or not at all). Its sync gets `b`'s stamps in the buckets that
    // differ: the versions alone name nodes it cannot reach, the stamps
    // carry their addresses, and the new node announces itself to each.
    let (_, _, b, you, _) = books_in_step();
    let mut new = Book::new("new");
    let new_own = Own::new("new", 1, addr(99));
    let asked = new.buckets(&new_own.stamp);
    let versions = b.differing(&you.stamp, &asked, 0);
    let stamps: Vec<Stamp> = b.differing_stamps(&you.stamp, &asked, 0).into_iter().cloned().collect();
    assert_eq!(versions.len(), 7, "six peers and its own stamp");
    let names = |v: &[Version]| v.iter().map(|v| v.name.clone()).collect::<Vec<_>>();
    assert_eq!(stamps.iter().map(|s| s.name.clone()).collect::<Vec<_>>(), names(&versions), "the same, in order");
    assert!(!new.versions_heard(&versions), "versions of nodes not held are passed over");
    assert!(new.pulls(Instant::now()).is_empty());
    for s in &stamps {
        assert!(new.stamp(s), "{} is news", s.name);
    }
    let mut announced: Vec<SocketAddr> = new
        .pulls(Instant::now())
        .into_iter()
        .map(|p| match p {
            Pull::Announce(a) => a,
            other => panic!("a node not named by SWIM yet is announced to, not pulled from: {other:?}"),
        })
        .collect();
    announced.sort();
    let mut want: Vec<SocketAddr> = stamps.iter().map(|s| s.addr).collect();
    want.sort();
    assert_eq!(announced, want, "every node of the answer, at its address");
}

#[test]
fn a_stamp_before_membership_is_kept_but_not_shown() {
    let mut book = Book::new("me");
    let mut own = Own::new("a", 5, addr(11));
    own.set(keys_of("a", 5, 1), false);
    book.stamp(&own.stamp);
    assert!(book.raw().is_empty(), "a node is in the view once membership names it");
    let t0 = Instant::now();
    assert_eq!(book.pulls(t0), vec![Pull::Announce(addr(11))], "SWIM missed it: this node announces itself there");
    assert!(book.pulls(t0).is_empty(), "once per PULL_RETRY");
    book.member(&SwimId::new("a", 5, addr(11)), NodeState::Ready);
    assert!(
        matches!(&book.pulls(t0)[..], [Pull::Want(a, _)] if *a == addr(11)),
        "named: its records are asked for at once"
    );
}

#[test]
fn a_member_whose_stamp_went_by_before_is_asked_for_it() {
    let mut book = Book::new("me");
    book.member(&SwimId::new("a", 5, addr(11)), NodeState::Ready);
    let want = Want { generation: 5, summary: 0, pods: 0 };
    assert_eq!(book.pulls(Instant::now()), vec![Pull::Want(addr(11), want.clone())]);
    let mut own = Own::new("a", 5, addr(11));
    own.set(keys_of("a", 5, 1), false);
    for h in own.answer(&want) {
        book.stamp(&h.stamp);
        if let Some(p) = h.page {
            book.page("a", p);
        }
    }
    assert_eq!(book.raw()[0].records.pods.len(), 1);
    assert!(book.pulls(Instant::now() + PULL_RETRY * 2).is_empty());
}

#[test]
fn an_unnamed_peer_is_forgotten_after_its_ttl_and_a_named_one_when_swim_drops_it() {
    let mut book = Book::new("me");
    let mut own = Own::new("ghost", 1, addr(12));
    own.set(keys_of("ghost", 1, 0), false);
    book.stamp(&own.stamp);
    let a = SwimId::new("a", 5, addr(11));
    book.begin_scan();
    book.member(&a, NodeState::Dead);
    let t0 = Instant::now();
    book.pulls(t0);
    assert!(!book.end_scan(t0 + UNNAMED_TTL / 2), "SWIM named a, and the ghost is young");
    assert_eq!(book.len(), 2);
    book.begin_scan();
    book.member(&a, NodeState::Dead);
    assert!(!book.end_scan(t0 + UNNAMED_TTL / 2), "a scan that names a keeps it");
    assert_eq!(book.len(), 2);
    book.begin_scan();
    assert!(book.end_scan(t0 + UNNAMED_TTL));
    assert!(book.is_empty(), "the ghost outlived its TTL, and SWIM forgot a");
}

#[test]
fn a_scan_may_be_skipped_only_while_every_peer_held_was_named() {
    // The service skips passing foca's members to the book when they are
    // as the last scan left them and `all_named` holds: then a scan
    // would change nothing.
    let mut book = Book::new("me");
    let (a, b) = (SwimId::new("a", 5, addr(11)), SwimId::new("b", 2, addr(12)));
    book.begin_scan();
    book.member(&a, NodeState::Ready);
    book.member(&b, NodeState::Ready);
    assert!(!book.end_scan(Instant::now()));
    assert!(book.all_named());
    // A member coming up between scans (foca's notification) is named.
    assert!(book.member(&SwimId::new("c", 1, addr(13)), NodeState::Ready));
    assert!(book.all_named());
    // Passing the same members again changes nothing.
    book.begin_scan();
    for id in [&a, &b, &SwimId::new("c", 1, addr(13))] {
        assert!(!book.member(id, NodeState::Ready), "{} is as it was", id.name);
    }
    assert!(!book.end_scan(Instant::now()));
    assert!(book.all_named());
    // Another bump or address of one name is a change, though the name is
    // the same (identities are compared without their names).
    assert!(book.member(&SwimId { bump: 1, ..a.clone() }, NodeState::Ready));
    assert!(book.member(&SwimId { addr: addr(21), ..b.clone() }, NodeState::Ready));
    // A peer known from a stamp only is not named: the next scan must run
    // (to time it out).
    let mut own = Own::new("ghost", 1, addr(14));
    own.set(keys_of("ghost", 1, 0), false);
    book.stamp(&own.stamp);
    assert!(!book.all_named());
}

#[test]
fn the_synced_peers_and_buckets_follow_every_change() {
    let mut book = Book::new("me");
    let own = Own::new("me", 1, addr(10)).stamp;
    let empty = book.buckets(&own);
    assert_eq!(book.sync_peer(0), None);
    book.begin_scan();
    book.member(&SwimId::new("a", 5, addr(11)), NodeState::Ready);
    book.member(&SwimId::new("b", 5, addr(12)), NodeState::Ready);
    book.end_scan(Instant::now());
    let two = book.buckets(&own);
    assert_ne!(two, empty, "named peers are hashed in");
    let mut picked: Vec<_> = (0..2).filter_map(|i| book.sync_peer(i)).collect();
    picked.sort();
    assert_eq!(picked, vec![addr(11), addr(12)]);
    let mut a = Own::new("a", 5, addr(11));
    a.set(keys_of("a", 5, 1), false);
    book.stamp(&a.stamp);
    assert_ne!(book.buckets(&own), two, "a new stamp moves its bucket");
    let with_stamp = book.buckets(&own);
    book.member(&SwimId::new("b", 5, addr(12)), NodeState::Dead);
    assert_ne!(book.buckets(&own), with_stamp, "a dead peer is not synced");
    assert_eq!(book.sync_peer(7), Some(addr(11)), "only a is left to pick");
    book.begin_scan();
    book.member(&SwimId::new("b", 5, addr(12)), NodeState::Dead);
    book.end_scan(Instant::now());
    assert_eq!(book.sync_peer(0), None, "SWIM forgot a: nobody is left to sync with");
    assert_eq!(book.buckets(&own), empty);
}

/// The sync index as one read of every peer would give it.
fn fresh_index(book: &Book) -> ([u32; SYNC_BUCKETS], std::collections::BTreeMap<String, SocketAddr>) {
    let mut sums = [0u32; SYNC_BUCKETS];
    let mut addrs = std::collections::BTreeMap::new();
    for (name, p) in &book.peers {
        if let Some(id) = p.id.as_ref().filter(|_| p.state.alive()) {
            sums[bucket_of(name)] ^= version_hash(&p.stamp);
            addrs.insert(name.clone(), id.addr);
        }
    }
    (sums, addrs)
}

#[test]
fn the_kept_sync_index_equals_one_read_afresh_after_any_change() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    let mut rng = StdRng::seed_from_u64(17);
    let mut book = Book::new("me");
    let own = Own::new("me", 1, addr(10)).stamp;
    let names = ["a", "b", "c", "d", "e", "f", "g", "me"];
    let states = [NodeState::Ready, NodeState::Suspect, NodeState::Dead, NodeState::Left];
    let mut seqs = std::collections::HashMap::<&str, (u64, u64)>::new();
    let mut kinds = [0usize; 4];
    for step in 0..5_000 {
        let name = names[rng.random_range(0..names.len())];
        let i = names.iter().position(|n| *n == name).unwrap() as u8;
        let (generation, seq) = seqs.entry(name).or_insert((5, 0));
        let kind = rng.random_range(0..4);
        kinds[kind] += 1;
        match kind {
            0 => {
                // foca's word: sometimes a newer generation, or a rejoin's bump.
                if rng.random_bool(0.1) {
                    *generation += 1;
                }
                let mut id = SwimId::new(name, *generation, addr(11 + i + 10 * rng.random_range(0..2u8)));
                id.bump = rng.random_range(0..3);
                book.member(&id, states[rng.random_range(0..states.len())]);
            }
            1 => {
                // A stamp: newer, older, or of a newer generation.
                *seq += 1;
                let mut s = Own::new(name, *generation + u64::from(rng.random_bool(0.05)), addr(11 + i)).stamp;
                s.seq = if rng.random_bool(0.8) { *seq } else { seq.saturating_sub(2) };
                if s.generation > *generation {
                    *generation = s.generation;
                }
                book.stamp(&s);
            }
            2 => {
                // A scan naming some members only: the others are forgotten.
                book.begin_scan();
                for n in names.iter().filter(|_| rng.random_bool(0.7)) {
                    let (g, _) = seqs.get(n).copied().unwrap_or((5, 0));
                    let idx = names.iter().position(|x| x == n).unwrap() as u8;
                    book.member(&SwimId::new(n, g, addr(11 + idx)), NodeState::Ready);
                }
                book.end_scan(Instant::now() + UNNAMED_TTL * 2);
            }
            _ => {
                let pick = rng.random::<u32>() as usize;
                let (_, addrs) = fresh_index(&book);
                let got = book.sync_peer(pick);
                assert_eq!(got.is_some(), !addrs.is_empty(), "step {step}");
                assert!(got.is_none_or(|a| addrs.values().any(|x| *x == a)), "step {step}: {got:?} is not synced");
            }
        }
        let (sums, addrs) = fresh_index(&book);
        assert_eq!(book.sums, sums, "step {step}: the buckets' sums");
        let kept: std::collections::BTreeMap<String, SocketAddr> = book
            .peers
            .iter()
            .filter(|(_, p)| p.sync.is_some())
            .map(|(n, p)| (n.clone(), p.id.as_ref().unwrap().addr))
            .collect();
        assert_eq!(kept, addrs, "step {step}: the synced peers");
        let mut picks: Vec<SocketAddr> = (0..addrs.len()).filter_map(|k| book.sync_peer(k)).collect();
        picks.sort();
        let mut want: Vec<SocketAddr> = addrs.values().copied().collect();
        want.sort();
        assert_eq!(picks, want, "step {step}: every synced peer can be picked, once");
        // Nothing differs from a book holding the same: nothing to answer.
        let mine = book.buckets(&own);
        assert!(book.differing(&own, &mine, step).is_empty(), "step {step}");
    }
    assert!(kinds.iter().all(|k| *k > 1_000), "every kind of change was made: {kinds:?}");
}
