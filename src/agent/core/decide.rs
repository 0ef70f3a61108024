//! Reconcile decisions: what to start and stop, given the plan and what runs.
//!
//! Pure: time comes in as an argument. The handoff rule lives here: a pod
//! this node no longer owns keeps running until its new owner reports it
//! Ready with the same template (make-before-break), or until the handoff
//! times out. Fenced pods never overlap: they stop at once when ownership
//! moves or this node loses its majority.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::model::revision::fence_key;
use crate::placement::plan::Plan;

/// What the agent knows of a pod it runs.
#[derive(Debug, Clone)]
pub struct Local {
    pub template_hash: String,
    /// Its fence key (`revision::fence_key`): a fenced pod waits for every
    /// other local pod with its key.
    pub fence: String,
    pub stopping: bool,
    pub handoff_since: Option<Instant>,
    /// When this node first saw the new owner report the pod Ready.
    pub ready_elsewhere_since: Option<Instant>,
}

/// How long handoffs may take and linger.
#[derive(Debug, Clone, Copy)]
pub struct Handoff {
    /// The old copy stops at the latest this long after the handoff began.
    pub timeout: Duration,
    /// The old copy keeps serving this long after the new one is Ready, so
    /// every node learns of the new copy (gossip) before the old one goes.
    pub linger: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// No longer in the desired state.
    Deleted,
    /// Its new owner runs it and reports Ready.
    HandedOff,
    /// The new owner did not report Ready within the handoff timeout.
    HandoffTimeout,
    /// Fenced pod: ownership moved, or this node lost its majority.
    Fenced,
    /// The template changed: stop, then start the new one.
    Replaced,
}

impl StopReason {
    pub fn message(self) -> &'static str {
        match self {
            StopReason::Deleted => "no longer desired",
            StopReason::HandedOff => "handed off: ready on its new owner",
            StopReason::HandoffTimeout => "handoff timed out: the new owner did not report it ready",
            StopReason::Fenced => "fenced: this node no longer may run it",
            StopReason::Replaced => "template changed: replacing",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Start(String),
    Stop(String, StopReason),
    /// This node stopped owning the pod at `now`: remember when.
    BeginHandoff(String),
    /// The new owner reports the pod Ready: remember when.
    SeenReadyElsewhere(String),
}

/// Decides what to do. `waiting` holds pods not to start before the given
/// instant (Job retry back-off).
pub fn decide(
    plan: &Plan,
    me: &str,
    local: &BTreeMap<String, Local>,
    waiting: &BTreeMap<String, Instant>,
    now: Instant,
    handoff: Handoff,
) -> Vec<Action> {
    let mut out = Vec::new();
    for (id, l) in local {
        if l.stopping {
            continue;
        }
        let Some(d) = plan.desired.get(id) else {
            out.push(Action::Stop(id.clone(), StopReason::Deleted));
            continue;
        };
        let mine = plan.owners.get(id).map(|n| n.as_str()) == Some(me);
        if mine {
            if d.fenced && !plan.quorum {
                out.push(Action::Stop(id.clone(), StopReason::Fenced));
            } else if d.template_hash != l.template_hash {
                out.push(Action::Stop(id.clone(), StopReason::Replaced));
            }
            continue;
        }
        if d.fenced {
            out.push(Action::Stop(id.clone(), StopReason::Fenced));
            continue;
        }
        if plan.ready_on_owner(id) == Some(d.template_hash.as_str()) {
            match l.ready_elsewhere_since {
                None => out.push(Action::SeenReadyElsewhere(id.clone())),
                Some(t) if now.saturating_duration_since(t) >= handoff.linger => {
                    out.push(Action::Stop(id.clone(), StopReason::HandedOff))
                }
                Some(_) => {}
            }
            continue;
        }
        match l.handoff_since {
            None => out.push(Action::BeginHandoff(id.clone())),
            Some(t) if now.saturating_duration_since(t) >= handoff.timeout => {
                out.push(Action::Stop(id.clone(), StopReason::HandoffTimeout))
            }
            Some(_) => {}
        }
    }
    for id in plan.owned_by(me).iter() {
        if local.contains_key(id) {
            continue;
        }
        let Some(d) = plan.desired.get(id) else {
            continue;
        };
        if d.fenced && (!plan.quorum || !plan.stable || plan.fenced_elsewhere.contains(id)) {
            continue;
        }
        // Another revision's copy of this fenced replica still runs (or
        // stops) here: the new one starts once it has ended.
        if d.fenced {
            let key = fence_key(&d.owner.uid, id);
            if local.iter().any(|(l, lo)| l != id && lo.fence == key) {
                continue;
            }
        }
        if waiting.get(id).is_some_and(|t| *t > now) {
            continue;
        }
        out.push(Action::Start(id.clone()));
    }
    out
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests may read the clock for a base instant
mod tests {
    use super::*;
    use crate::model::pods::DesiredPod;
    use std::sync::Arc;

    fn pod(name: &str, hash: &str, fenced: bool) -> DesiredPod {
        crate::model::pods::test_pod("default", name, hash, fenced)
    }

    fn plan(pods: &[(&DesiredPod, &str)]) -> Plan {
        Plan {
            desired: pods.iter().map(|(p, _)| (*p).clone()).collect(),
            owners: Arc::new(pods.iter().map(|(p, o)| (p.id(), (*o).into())).collect()),
            quorum: true,
            stable: true,
            ..Default::default()
        }
    }

    /// Makes `owner` report `id` Ready with `hash` (or nothing).
    fn set_ready(p: &mut Plan, owner: &str, id: &str, hash: Option<&str>) {
        use crate::membership::view::{ClusterView, NodeInfo, NodeState, NodeView};
        use crate::model::status::PodStatus;
        let pods: BTreeMap<String, PodStatus> = hash
            .map(|h| (id.to_string(), PodStatus { ready: true, template_hash: h.into(), ..Default::default() }))
            .into_iter()
            .collect();
        let node = NodeView {
            info: Arc::new(NodeInfo { name: owner.into(), ..Default::default() }),
            state: NodeState::Ready,
            since: 0,
            pods: crate::model::status::peer_pods(&pods),
            state_digest: Default::default(),
            extra: Default::default(),
        };
        p.view = Arc::new(ClusterView {
            self_name: "me".into(),
            nodes: std::iter::once((owner.to_string(), node)).collect(),
            quorum: true,
        });
    }

    const H60: Handoff = Handoff { timeout: Duration::from_secs(60), linger: Duration::from_secs(1) };
    const H1: Handoff = Handoff { timeout: Duration::from_secs(1), linger: Duration::from_secs(1) };

    fn local(hash: &str) -> Local {
        Local {
            template_hash: hash.into(),
            fence: String::new(),
            stopping: false,
            handoff_since: None,
            ready_elsewhere_since: None,
        }
    }

    #[test]
    fn starts_owned_and_stops_deleted() {
        let a = pod("a", "h", false);
        let p = plan(&[(&a, "me")]);
        let now = Instant::now();
        let t = H60;
        assert_eq!(decide(&p, "me", &BTreeMap::new(), &BTreeMap::new(), now, t), vec![Action::Start(a.id())]);
        let running = BTreeMap::from([("default/gone".to_string(), local("h"))]);
        assert_eq!(
            decide(&Plan::default(), "me", &running, &BTreeMap::new(), now, t),
            vec![Action::Stop("default/gone".into(), StopReason::Deleted)]
        );
    }

    #[test]
    fn make_before_break_handoff() {
        let a = pod("a", "h", false);
        let mut p = plan(&[(&a, "other")]);
        let now = Instant::now();
        let t = H60;
        let mut running = BTreeMap::from([(a.id(), local("h"))]);
        assert_eq!(decide(&p, "me", &running, &BTreeMap::new(), now, t), vec![Action::BeginHandoff(a.id())]);
        running.get_mut(&a.id()).unwrap().handoff_since = Some(now);
        assert!(
            decide(&p, "me", &running, &BTreeMap::new(), now + Duration::from_secs(5), t).is_empty(),
            "keeps running until the new copy is ready"
        );
        set_ready(&mut p, "other", &a.id(), Some("old-hash"));
        assert!(
            decide(&p, "me", &running, &BTreeMap::new(), now, t).is_empty(),
            "ready with another template does not count"
        );
        set_ready(&mut p, "other", &a.id(), Some("h"));
        assert_eq!(decide(&p, "me", &running, &BTreeMap::new(), now, t), vec![Action::SeenReadyElsewhere(a.id())]);
        running.get_mut(&a.id()).unwrap().ready_elsewhere_since = Some(now);
        assert!(
            decide(&p, "me", &running, &BTreeMap::new(), now, t).is_empty(),
            "lingers while gossip spreads the news"
        );
        assert_eq!(
            decide(&p, "me", &running, &BTreeMap::new(), now + t.linger, t),
            vec![Action::Stop(a.id(), StopReason::HandedOff)]
        );
        set_ready(&mut p, "other", &a.id(), None);
        running.get_mut(&a.id()).unwrap().ready_elsewhere_since = None;
        assert_eq!(
            decide(&p, "me", &running, &BTreeMap::new(), now + t.timeout, t),
            vec![Action::Stop(a.id(), StopReason::HandoffTimeout)]
        );
    }

    #[test]
    fn template_change_replaces_and_waiting_delays() {
        let a = pod("a", "new", false);
        let p = plan(&[(&a, "me")]);
        let now = Instant::now();
        let running = BTreeMap::from([(a.id(), local("old"))]);
        assert_eq!(
            decide(&p, "me", &running, &BTreeMap::new(), now, H1),
            vec![Action::Stop(a.id(), StopReason::Replaced)]
        );
        let waiting = BTreeMap::from([(a.id(), now + Duration::from_secs(1))]);
        assert!(decide(&p, "me", &BTreeMap::new(), &waiting, now, H1).is_empty());
    }

    #[test]
    fn a_fenced_replicas_new_revision_waits_for_the_old_one_here() {
        let old = pod("db-0a0a0a0a0a-0", "old", true);
        let new = pod("db-1b1b1b1b1b-0", "new", true);
        let p = plan(&[(&new, "me")]);
        let now = Instant::now();
        let fence = fence_key(&old.owner.uid, &old.id());
        let stopping = BTreeMap::from([(old.id(), Local { stopping: true, fence, ..local("old") })]);
        let acts = decide(&p, "me", &stopping, &BTreeMap::new(), now, H60);
        assert!(!acts.contains(&Action::Start(new.id())), "the old revision's copy still stops here: {acts:?}");
        assert_eq!(decide(&p, "me", &BTreeMap::new(), &BTreeMap::new(), now, H60), vec![Action::Start(new.id())]);
        // A pod of another owner whose name looks alike (a CronJob `db`'s)
        // does not hold it back.
        let cron_pod = "default/db-29123456-0".to_string();
        let cron =
            BTreeMap::from([(cron_pod.clone(), Local { fence: fence_key("cron-uid", &cron_pod), ..local("x") })]);
        let acts = decide(&p, "me", &cron, &BTreeMap::new(), now, H60);
        assert!(acts.contains(&Action::Start(new.id())), "{acts:?}");
        // An unfenced workload surges as it likes.
        let (o2, n2) = (pod("web-0a0a0a0a0a-0", "old", false), pod("web-1b1b1b1b1b-0", "new", false));
        let running = BTreeMap::from([(o2.id(), local("old"))]);
        let acts = decide(&plan(&[(&n2, "me")]), "me", &running, &BTreeMap::new(), now, H60);
        assert!(acts.contains(&Action::Start(n2.id())), "{acts:?}");
    }

    #[test]
    fn fenced_pods_never_overlap() {
        let f = pod("db", "h", true);
        let mut p = plan(&[(&f, "me")]);
        let now = Instant::now();
        let t = H60;
        p.fenced_elsewhere.insert(f.id());
        assert!(
            decide(&p, "me", &BTreeMap::new(), &BTreeMap::new(), now, t).is_empty(),
            "waits until the old copy is gone"
        );
        p.fenced_elsewhere.clear();
        p.stable = false;
        assert!(
            decide(&p, "me", &BTreeMap::new(), &BTreeMap::new(), now, t).is_empty(),
            "membership just changed: views may still differ, no start"
        );
        p.stable = true;
        assert_eq!(decide(&p, "me", &BTreeMap::new(), &BTreeMap::new(), now, t), vec![Action::Start(f.id())]);
        p.quorum = false;
        assert!(decide(&p, "me", &BTreeMap::new(), &BTreeMap::new(), now, t).is_empty(), "no majority, no start");
        let running = BTreeMap::from([(f.id(), local("h"))]);
        assert_eq!(
            decide(&p, "me", &running, &BTreeMap::new(), now, t),
            vec![Action::Stop(f.id(), StopReason::Fenced)]
        );
        let moved = plan(&[(&f, "other")]);
        assert_eq!(
            decide(&moved, "me", &running, &BTreeMap::new(), now, t),
            vec![Action::Stop(f.id(), StopReason::Fenced)]
        );
    }
}
