use super::*;
use proptest::prelude::*;

fn client(i: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40000 + i))
}

const IDLE: Duration = Duration::from_secs(30);

#[test]
fn a_flow_sticks_to_its_backend_until_idle() {
    let t0 = Instant::now();
    let mut f: Flows<u8, ()> = Flows::new(16, IDLE);
    assert_eq!(f.route(client(1), t0, |_| true).0, Route::New { moved_from: None });
    assert!(f.insert(client(1), 7, (), t0).is_empty());
    for s in 1..10 {
        assert_eq!(f.route(client(1), t0 + Duration::from_secs(s * 20), |_| true).0, Route::Existing(7));
    }
    // Unused for the idle timeout: forgotten, the next datagram picks again.
    assert_eq!(f.route(client(1), t0 + Duration::from_secs(180 + 30), |_| true).0, Route::New { moved_from: None });
    assert!(f.is_empty());
}

#[test]
fn replies_keep_a_flow_alive() {
    let t0 = Instant::now();
    let mut f: Flows<u8, ()> = Flows::new(16, IDLE);
    f.insert(client(1), 1, (), t0);
    f.touch(&client(1), t0 + Duration::from_secs(25));
    assert!(f.expire(t0 + Duration::from_secs(40)).is_empty());
    assert_eq!(f.expire(t0 + Duration::from_secs(55)).len(), 1);
}

#[test]
fn a_dead_backends_flows_move_on_their_next_datagram() {
    let t0 = Instant::now();
    let mut f: Flows<u8, ()> = Flows::new(16, IDLE);
    f.insert(client(1), 1, (), t0);
    f.insert(client(2), 2, (), t0);
    let live = |b: &u8| *b != 1;
    assert_eq!(f.route(client(1), t0, live).0, Route::New { moved_from: Some(1) });
    assert_eq!(f.route(client(2), t0, live).0, Route::Existing(2));
    assert!(f.get(&client(1)).is_none());
}

#[test]
fn a_refused_flow_is_dropped() {
    let t0 = Instant::now();
    let mut f: Flows<u8, &str> = Flows::new(16, IDLE);
    f.insert(client(1), 1, "socket", t0);
    let gone = f.fail(&client(1)).unwrap();
    assert_eq!((gone.backend, gone.conn), (1, "socket"));
    assert_eq!(f.route(client(1), t0, |_| true).0, Route::New { moved_from: None });
}

#[test]
fn past_the_cap_the_least_recently_used_flow_is_evicted() {
    let t0 = Instant::now();
    let mut f: Flows<u8, u16> = Flows::new(3, IDLE);
    for i in 0..3 {
        f.insert(client(i), 0, i, t0 + Duration::from_millis(u64::from(i)));
    }
    f.touch(&client(0), t0 + Duration::from_millis(10));
    let evicted = f.insert(client(9), 0, 9, t0 + Duration::from_millis(11));
    assert_eq!(evicted.iter().map(|(k, e)| (*k, e.conn)).collect::<Vec<_>>(), vec![(client(1), 1)]);
    assert_eq!(f.len(), 3);
}

#[derive(Debug, Clone)]
enum Op {
    Datagram { client: u16, pick: u8, dt_ms: u64 },
    Reply { client: u16, dt_ms: u64 },
    Kill(u8),
    Revive(u8),
    Refused(u16),
    Expire { dt_ms: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u16..24, 0u8..5, 0u64..20_000).prop_map(|(client, pick, dt_ms)| Op::Datagram { client, pick, dt_ms }),
        2 => (0u16..24, 0u64..20_000).prop_map(|(client, dt_ms)| Op::Reply { client, dt_ms }),
        1 => (0u8..5).prop_map(Op::Kill),
        1 => (0u8..5).prop_map(Op::Revive),
        1 => (0u16..24).prop_map(Op::Refused),
        1 => (0u64..40_000).prop_map(|dt_ms| Op::Expire { dt_ms }),
    ]
}

proptest! {
    /// Under any interleaving of datagrams, replies, backends dying and
    /// coming back, refusals and expiry: a datagram never goes to a dead
    /// backend; a flow keeps its backend while that backend is live and the
    /// flow in use; the table never holds more than `cap` flows, nor a flow
    /// idle past the timeout after `expire`.
    #[test]
    fn flows_follow_live_backends(ops in proptest::collection::vec(op(), 1..200), cap in 1usize..12) {
        let mut now = Instant::now();
        let mut f: Flows<u8, ()> = Flows::new(cap, IDLE);
        let mut live = [true; 5];
        // client → (backend, last use) as the model expects it.
        let mut model: HashMap<u16, (u8, Instant)> = HashMap::new();
        for op in ops {
            match op {
                Op::Datagram { client: c, pick, dt_ms } => {
                    now += Duration::from_millis(dt_ms);
                    let r = f.route(client(c), now, |b| live[*b as usize]).0;
                    let expected = model.get(&c).filter(|(b, t)| live[*b as usize] && now - *t < IDLE).map(|(b, _)| *b);
                    match (r, expected) {
                        (Route::Existing(b), Some(e)) => {
                            prop_assert_eq!(b, e);
                            prop_assert!(live[b as usize]);
                            model.insert(c, (b, now));
                        }
                        (Route::New { moved_from }, None) => {
                            if let Some(m) = moved_from {
                                prop_assert!(!live[m as usize], "moved a flow off a live backend");
                            }
                            model.remove(&c);
                            if let Some(b) = (0..5u8).map(|i| (pick + i) % 5).find(|b| live[*b as usize]) {
                                for (k, _) in f.insert(client(c), b, (), now) {
                                    model.remove(&(k.port() - 40000));
                                }
                                model.insert(c, (b, now));
                            }
                        }
                        (r, e) => prop_assert!(false, "route {:?}, model expected {:?}", r, e),
                    }
                }
                Op::Reply { client: c, dt_ms } => {
                    now += Duration::from_millis(dt_ms);
                    f.touch(&client(c), now);
                    if let Some(e) = model.get_mut(&c) { e.1 = now; }
                }
                Op::Kill(b) => live[b as usize] = false,
                Op::Revive(b) => live[b as usize] = true,
                Op::Refused(c) => {
                    prop_assert_eq!(f.fail(&client(c)).map(|g| g.backend), model.remove(&c).map(|m| m.0));
                }
                Op::Expire { dt_ms } => {
                    now += Duration::from_millis(dt_ms);
                    for (k, g) in f.expire(now) {
                        prop_assert!(now - g.last >= IDLE);
                        model.remove(&(k.port() - 40000));
                    }
                }
            }
            prop_assert!(f.len() <= cap);
            prop_assert_eq!(f.len(), model.len());
        }
    }
}
