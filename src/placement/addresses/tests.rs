use proptest::prelude::*;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn node(name: &str, pool: &[&str]) -> Candidate {
    Candidate { name: name.into(), pool: Pool::parse(pool).unwrap(), unable: None }
}

fn addrs(n: u8) -> BTreeSet<IpAddr> {
    (0..n).map(|i| IpAddr::from([10, 0, 0, 100 + i])).collect()
}

fn held(h: &BTreeMap<IpAddr, Holding>) -> BTreeMap<IpAddr, String> {
    h.iter()
        .filter_map(|(ip, h)| match h {
            Holding::Held(n) => Some((*ip, n.clone())),
            Holding::Unheld(_) => None,
        })
        .collect()
}

#[test]
fn a_dead_holder_loses_only_its_own_addresses() {
    let pool = ["10.0.0.100-10.0.0.131"];
    let nodes: Vec<Candidate> = ["a", "b", "c", "d"].iter().map(|n| node(n, &pool)).collect();
    let before = held(&holders(&addrs(32), &nodes));
    assert_eq!(before.len(), 32);
    let per: BTreeSet<&String> = before.values().collect();
    assert_eq!(per.len(), 4, "32 addresses spread over all 4 nodes: {before:?}");
    let without_b: Vec<Candidate> = nodes.iter().filter(|c| c.name != "b").cloned().collect();
    let after = held(&holders(&addrs(32), &without_b));
    for (ip, was) in &before {
        if was == "b" {
            assert_ne!(after[ip], "b");
        } else {
            assert_eq!(&after[ip], was, "{ip} moved though its holder lives");
        }
    }
}

#[test]
fn only_nodes_whose_pool_has_the_address_and_that_can_hold_it() {
    let a = node("a", &["10.0.0.100"]);
    let mut b = node("b", &["10.0.0.100-10.0.0.101"]);
    let c = node("c", &["10.0.9.0/24"]);
    let h = holders(&addrs(2), &[a.clone(), b.clone(), c.clone()]);
    assert_eq!(h[&ip("10.0.0.101")], Holding::Held("b".into()), "only b's pool has .101");
    b.unable = Some("no CAP_NET_ADMIN".into());
    let h = holders(&addrs(2), &[a, b, c]);
    assert_eq!(h[&ip("10.0.0.100")], Holding::Held("a".into()));
    match &h[&ip("10.0.0.101")] {
        Holding::Unheld(why) => assert!(why.contains("b: no CAP_NET_ADMIN"), "{why}"),
        other => panic!("{other:?}"),
    }
    match &holders(&[ip("10.9.9.9")].into(), &[node("a", &["10.0.0.1"])])[&ip("10.9.9.9")] {
        Holding::Unheld(why) => assert!(why.contains("no live node has 10.9.9.9 in its load_balancer.pool"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn offers_are_read_from_the_view_and_garbage_is_no_offer() {
    use crate::membership::view::{NodeInfo, NodeState, NodeView};
    let nv = |name: &str, state, offer: Option<&str>| NodeView {
        info: std::sync::Arc::new(NodeInfo { name: name.into(), ..Default::default() }),
        state,
        since: 0,
        pods: Default::default(),
        state_digest: Default::default(),
        extra: std::sync::Arc::new(offer.map(|o| (OFFER_KEY.to_string(), o.to_string())).into_iter().collect()),
    };
    let good = Offer {
        pool: vec!["10.0.0.100-101".into()],
        interface: "eth0".into(),
        unable: None,
        held: [ip("10.0.0.100")].into(),
    }
    .encode();
    let mut view = ClusterView { self_name: "a".into(), nodes: Default::default(), quorum: true };
    for (n, state, o) in [
        ("a", NodeState::Ready, Some(good.as_str())),
        ("b", NodeState::Ready, Some("{not json")),
        ("c", NodeState::Dead, Some(good.as_str())),
        ("d", NodeState::Ready, Some(r#"{"pool":["10.0.0.9-1"],"interface":"x","held":[]}"#)),
        ("e", NodeState::Ready, Some(good.as_str())),
    ] {
        view.nodes.insert(n.into(), nv(n, state, o));
    }
    let sched: BTreeSet<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
    let c = candidates(&view, &sched, None);
    let names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
    assert!(
        names.is_empty(),
        "a's own keys are not in its view, b's garbage, c dead, d's bad pool, e not schedulable: {names:?}"
    );
    let claims = claimed(&view, None);
    assert_eq!(claims[&ip("10.0.0.100")], ["e".to_string()].into(), "c is dead, a's own keys come as mine");
    let mine = Offer { pool: vec!["10.0.0.100".into()], held: [ip("10.0.0.100")].into(), ..Default::default() };
    assert_eq!(claimed(&view, Some(&mine))[&ip("10.0.0.100")], ["a".to_string(), "e".to_string()].into());
    assert_eq!(candidates(&view, &sched, Some(&mine))[0].pool.to_string(), "10.0.0.100");
}

proptest! {
    /// Every node computes the same single holder per address, whatever
    /// order its view lists the nodes in, and the holder is one that may.
    #[test]
    fn one_holder_whatever_the_order(
        pools in proptest::collection::vec((0u8..4, 1u8..8, any::<bool>()), 1..8),
        n_addrs in 1u8..12,
        seed in any::<u64>(),
    ) {
        let nodes: Vec<Candidate> = pools
            .iter()
            .enumerate()
            .map(|(i, (start, len, able))| Candidate {
                name: format!("n{i}"),
                pool: Pool::parse(&[format!("10.0.0.{}-{}", 100 + start, 100 + start + len)]).unwrap(),
                unable: (!able).then(|| "cannot".to_string()),
            })
            .collect();
        let a = holders(&addrs(n_addrs), &nodes);
        let mut shuffled = nodes.clone();
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = crate::placement::mix(s.wrapping_add(i as u64));
            shuffled.swap(i, (s % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(&a, &holders(&addrs(n_addrs), &shuffled));
        for (ip, h) in &a {
            let able: Vec<&Candidate> = nodes.iter().filter(|c| c.pool.contains(*ip) && c.unable.is_none()).collect();
            match h {
                Holding::Held(n) => prop_assert!(able.iter().any(|c| &c.name == n)),
                Holding::Unheld(_) => prop_assert!(able.is_empty()),
            }
        }
    }
}
