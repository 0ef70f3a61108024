//! DaemonSets through the planner: one bound pod per eligible node, nothing
//! moves when a node dies, a joining node gets its pod, and an update
//! replaces at most `maxUnavailable` nodes' pods at a time.
#![allow(clippy::disallowed_methods)] // tests may read the clock for a base instant

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::membership::view::{ClusterView, NodeInfo, NodeState, NodeView};
use crate::model::node::NodeName;
use crate::model::parse::{SourceFile, parse_files};
use crate::model::pods::{Resources, RuntimeKind};
use crate::model::status::{Phase, PodStatus};
use crate::model::validate::Context;
use crate::placement::plan::{PlanRules, PlanView, Planner};
use crate::state::apply::{Mode, plan_apply};
use crate::state::{Snapshot, StateDb};

const DS: &str = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent}\nspec:\n  selector: {matchLabels: {app: agent}}\n  template:\n    metadata: {labels: {app: agent}}\n    spec:\n      containers: [{name: c, command: [sleep, '1000'], env: [{name: V, value: '1'}]}]\n";
const WEB: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 6\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: c, command: [sleep, '1000']}]\n";
const RULES: PlanRules = PlanRules { fence_delay_secs: 10, linger_ms: 0 };

fn db() -> StateDb {
    StateDb::in_memory("a", || uhlc::NTP64(1 << 32), std::time::Duration::from_secs(60)).unwrap()
}

fn apply(db: &StateDb, text: &str) -> Arc<Snapshot> {
    let out = parse_files(&[SourceFile { name: "t.yaml".into(), content: text.into() }], &Context::default(), None);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let (_, changes) = plan_apply(&db.snapshot(), out.objects, db.now(), Mode::Apply).unwrap();
    db.write(changes).unwrap();
    db.snapshot()
}

fn node(name: &str, labels: &[(&str, &str)], state: NodeState) -> NodeView {
    let info = NodeInfo {
        name: name.into(),
        schedulable: true,
        weight: 1000,
        allocatable: Resources { cpu_millis: 4000, memory_bytes: 8 << 30 },
        runtimes: std::sync::Arc::new([RuntimeKind::Process].into()),
        max_pods: 100,
        labels: std::sync::Arc::new(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        ..Default::default()
    };
    crate::membership::view::test_node(info, state)
}

fn view(nodes: Vec<NodeView>) -> ClusterView {
    let mut v = ClusterView { self_name: "a".into(), quorum: true, ..Default::default() };
    for n in nodes {
        v.nodes.insert(n.info.name.as_str().into(), n);
    }
    v
}

/// Each node reports the pods the plan gave it, Ready, with their template.
fn run_owned(v: &mut ClusterView, p: &PlanView) {
    let mut by_node: BTreeMap<String, BTreeMap<String, PodStatus>> = BTreeMap::new();
    for (id, owner) in p.plan.owners.iter() {
        let d = &p.plan.desired[id];
        let st = PodStatus {
            namespace: d.namespace.clone(),
            name: d.name.clone(),
            node: owner.to_string(),
            owner_uid: d.owner.uid.clone(),
            template_hash: d.template_hash.clone(),
            phase: Phase::Running,
            ready: true,
            ..Default::default()
        };
        by_node.entry(owner.to_string()).or_default().insert(id.clone(), st);
    }
    let names: Vec<NodeName> = v.nodes.keys().cloned().collect();
    for name in names {
        if let Some(n) = v.nodes.get_mut(name.as_str()) {
            n.pods = crate::model::status::peer_pods(&by_node.remove(name.as_str()).unwrap_or_default());
        }
    }
}

fn agent_owners(p: &PlanView) -> BTreeMap<String, String> {
    p.plan
        .owners
        .iter()
        .filter(|(id, _)| id.starts_with("default/agent-"))
        .map(|(a, b)| (a.clone(), b.to_string()))
        .collect()
}

#[test]
fn one_pod_per_node_bound_to_it_and_nothing_moves_when_a_node_dies() {
    let db = db();
    apply(&db, WEB);
    let snap = apply(&db, DS);
    let mut p = Planner::default();
    let names = ["a", "b", "c"];
    let v = view(names.iter().map(|n| node(n, &[], NodeState::Ready)).collect());
    let plan = p.plan(&snap, &Arc::new(v), &RULES, 100_000);
    let owners = agent_owners(&plan);
    let want: BTreeMap<String, String> = names.iter().map(|n| (format!("default/agent-{n}"), n.to_string())).collect();
    assert_eq!(owners, want, "agent-<node> on each node");
    assert_eq!(plan.plan.owners.len(), 9, "and the Deployment's 6 replicas besides");
    // Node c dies: its pod is not desired any more, and nobody else runs two.
    let v =
        view(vec![node("a", &[], NodeState::Ready), node("b", &[], NodeState::Ready), node("c", &[], NodeState::Dead)]);
    let plan = p.plan(&snap, &Arc::new(v), &RULES, 101_000);
    let owners = agent_owners(&plan);
    assert_eq!(owners.len(), 2, "{owners:?}");
    assert!(owners.iter().all(|(id, n)| id.ends_with(&format!("-{n}"))), "{owners:?}");
    let d = &plan.daemons[&("default".to_string(), "agent".to_string())];
    assert_eq!(d.nodes, ["a", "b"]);
    // A node that joins gets its pod, before it has settled too.
    let mut fresh = node("d", &[], NodeState::Ready);
    Arc::make_mut(&mut fresh.info).schedulable = false;
    let v = view(vec![node("a", &[], NodeState::Ready), node("b", &[], NodeState::Ready), fresh]);
    let plan = p.plan(&snap, &Arc::new(v), &RULES, 102_000);
    assert_eq!(agent_owners(&plan).get("default/agent-d").map(String::as_str), Some("d"));
    assert!(
        plan.plan.owners.iter().filter(|(_, n)| *n == "d").count() == 1,
        "a node that has not settled takes its DaemonSet pod and nothing else"
    );
}

#[test]
fn node_selectors_and_cordons() {
    let db = db();
    let sel = DS.replace("      containers:", "      nodeSelector: {disk: ssd}\n      containers:");
    let snap = apply(&db, &sel);
    let mut p = Planner::default();
    let v = view(vec![
        node("a", &[("disk", "ssd")], NodeState::Ready),
        node("b", &[], NodeState::Ready),
        node("c", &[("disk", "ssd")], NodeState::Ready),
    ]);
    let plan = p.plan(&snap, &Arc::new(v), &RULES, 100_000);
    let owners: Vec<String> = agent_owners(&plan).into_values().collect();
    assert_eq!(owners, ["a", "c"]);
    let snap = apply(&db, &sel.replace("{disk: ssd}", "{kubernetes.io/hostname: b}"));
    let v =
        view(vec![node("a", &[], NodeState::Ready), node("b", &[("kubernetes.io/hostname", "b")], NodeState::Ready)]);
    let plan = p.plan(&snap, &Arc::new(v), &RULES, 101_000);
    assert_eq!(agent_owners(&plan).into_values().collect::<Vec<_>>(), ["b"]);
}

#[test]
fn an_update_replaces_one_node_at_a_time_in_place() {
    let db = db();
    let snap = apply(&db, DS);
    let mut p = Planner::default();
    let mut v = view(["a", "b", "c", "d"].iter().map(|n| node(n, &[], NodeState::Ready)).collect());
    let plan = p.plan(&snap, &Arc::new(v.clone()), &RULES, 100_000);
    run_owned(&mut v, &plan);
    let old = plan.plan.desired["default/agent-a"].template_hash.clone();
    let snap = apply(&db, &DS.replace("value: '1'", "value: '2'"));
    let mut now = 101_000;
    let mut seen_gaps = 0;
    for _ in 0..20 {
        let plan = p.plan(&snap, &Arc::new(v.clone()), &RULES, now);
        let agents = agent_owners(&plan);
        let gaps = 4 - agents.len();
        assert!(gaps <= 1, "at most maxUnavailable (1) node without its pod: {agents:?}");
        seen_gaps += gaps;
        let names: Vec<&str> = agents.keys().map(|k| k.trim_start_matches("default/")).collect();
        assert!(names.iter().all(|n| n.starts_with("agent-")), "same names across revisions: {names:?}");
        run_owned(&mut v, &plan);
        now += 1000;
        let hashes: Vec<&str> =
            agents.keys().map(|id| plan.plan.desired[id].template_hash.as_str()).filter(|h| *h == old).collect();
        if hashes.is_empty() && agents.len() == 4 {
            assert!(seen_gaps >= 4, "each node's pod was replaced in turn ({seen_gaps} gaps)");
            // Once every node reports its new pod, the status says so.
            let plan = p.plan(&snap, &Arc::new(v.clone()), &RULES, now);
            let d = &plan.daemons[&("default".to_string(), "agent".to_string())];
            assert_eq!((d.status.updated, d.status.available, d.nodes.len()), (4, 4, 4));
            assert!(d.status.complete);
            return;
        }
    }
    panic!("the update did not finish");
}
