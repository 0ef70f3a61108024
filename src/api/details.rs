//! Pod details on demand. A node gossips each of its pods' statuses as a
//! summary (`PodStatus::summary`: what placement, rollouts, the proxy and a
//! `get pods` row read); the details (container ids, images, messages,
//! last states) stay on the node that runs the pod. A `get` or `list` of
//! pods asks the nodes that run them for their statuses, all at once, each
//! within `DEADLINE`, at most `MAX_PARALLEL` at a time. A node that does
//! not answer in time is shown by its summaries, and the answer carries a
//! `Warning` header that names it (kubectl and `shoal get` print it).
//!
//! Watches (and the watch cache behind them) show the summaries of other
//! nodes' pods: a watch is fed by gossip, not by asking every node at each
//! change.
//!
//! `to_ask`, `merge` and `warning` are pure; `with_details` does the I/O.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use super::client::Client;
use super::server::Ctx;
use crate::membership::view::ClusterView;
use crate::model::status::PodStatus;

/// How long a node's answer is waited for.
pub const DEADLINE: Duration = Duration::from_secs(2);
/// Most nodes asked at once.
pub const MAX_PARALLEL: usize = 64;
/// Where a node serves the statuses of the pods it runs, in full.
pub const PATH: &str = "/shoal/v1/node-pods";

/// What `GET PATH` answers: this node's statuses, by pod id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodePods {
    pub node: String,
    pub pods: BTreeMap<String, PodStatus>,
}

/// `GET PATH?namespace=NS&name=NAME` (both optional): the pods this node
/// runs, with every detail.
#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Filter {
    fn wants(&self, s: &PodStatus) -> bool {
        self.namespace.as_ref().is_none_or(|ns| *ns == s.namespace) && self.name.as_ref().is_none_or(|n| *n == s.name)
    }

    /// The filter as a query string. Namespaces and pod names are DNS
    /// names; a value that is not one (it matches no pod) is left out, which
    /// only makes the answer larger: `merge` takes what the view shows.
    fn query(&self) -> String {
        let plain = |v: &str| v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        let q: Vec<String> = [("namespace", &self.namespace), ("name", &self.name)]
            .into_iter()
            .filter_map(|(k, v)| v.as_deref().filter(|v| plain(v)).map(|v| format!("{k}={v}")))
            .collect();
        if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) }
    }
}

pub async fn node_pods(State(ctx): State<Ctx>, Query(f): Query<Filter>) -> Json<NodePods> {
    let view = ctx.view.borrow().clone();
    let pods = view
        .nodes
        .get(view.self_name.as_str())
        .map(|n| n.pods.iter().filter(|(_, s)| f.wants(s)).map(|(id, s)| (id.clone(), (**s).clone())).collect())
        .unwrap_or_default();
    Json(NodePods { node: view.self_name.clone(), pods })
}

/// The peers to ask, with their API addresses: alive, not this node, and
/// reporting at least one pod the filter wants.
pub fn to_ask(view: &ClusterView, f: &Filter) -> Vec<(String, String)> {
    view.nodes
        .values()
        .filter(|n| n.state.alive() && n.info.name != view.self_name)
        .filter(|n| n.pods.values().any(|s| f.wants(s)))
        .map(|n| (n.info.name.clone(), n.info.api_url.clone()))
        .collect()
}

/// `view` with each answer's statuses in place of the summaries. Only pods
/// the view already shows on that node are replaced (an answer cannot add a
/// pod, or speak for another node). Returns the nodes that did not answer,
/// with why.
pub fn merge(
    view: &ClusterView,
    answers: Vec<(String, Result<NodePods, String>)>,
) -> (ClusterView, Vec<(String, String)>) {
    let mut out = view.clone();
    let mut missing = Vec::new();
    for (node, answer) in answers {
        let answer =
            answer.and_then(|a| if a.node == node { Ok(a) } else { Err(format!("answered as node {:?}", a.node)) });
        let a = match answer {
            Ok(a) => a,
            Err(why) => {
                missing.push((node, why));
                continue;
            }
        };
        let Some(n) = out.nodes.get_mut(node.as_str()) else { continue };
        let mut pods = (*n.pods).clone();
        for (id, s) in a.pods {
            if let Some(slot) = pods.get_mut(&id)
                && s.id() == id
            {
                *slot = Arc::new(s);
            }
        }
        n.pods = Arc::new(pods);
    }
    missing.sort();
    (out, missing)
}

/// The warning for the nodes that did not answer, if any.
pub fn warning(missing: &[(String, String)]) -> Option<String> {
    if missing.is_empty() {
        return None;
    }
    let names: Vec<String> = missing.iter().map(|(n, why)| format!("{n} ({why})")).collect();
    Some(format!(
        "pod details missing from {} node(s): {}; their pods are shown as gossiped (no container ids, messages or last states)",
        missing.len(),
        names.join(", ")
    ))
}

/// Asks one node for its statuses, within `DEADLINE`.
async fn ask(ctx: &Ctx, url: String, query: String) -> Result<NodePods, String> {
    let client = Client::new(vec![url], Some(ctx.token.clone())).with_tls(ctx.api_tls.clone()).with_timeout(DEADLINE);
    let path = format!("{PATH}{query}");
    match tokio::time::timeout(DEADLINE, client.get_json(&path)).await {
        Err(_) => Err(format!("no answer within {} s", DEADLINE.as_secs_f64())),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(v)) => serde_json::from_value(v).map_err(|e| format!("malformed answer: {e}")),
    }
}

/// `view` with the details of the pods `f` wants from the nodes that run
/// them, and the `Warning` headers for those that did not answer.
pub async fn with_details(ctx: &Ctx, view: &ClusterView, f: Filter) -> (ClusterView, HeaderMap) {
    let asked = to_ask(view, &f);
    let query = f.query();
    let mut answers = Vec::with_capacity(asked.len());
    let mut pending = asked.into_iter();
    let mut set = JoinSet::new();
    loop {
        while set.len() < MAX_PARALLEL {
            let Some((name, url)) = pending.next() else { break };
            let (ctx, query) = (ctx.clone(), query.clone());
            set.spawn(async move { (name, ask(&ctx, url, query).await) });
        }
        match set.join_next().await {
            Some(Ok(a)) => answers.push(a),
            Some(Err(e)) => tracing::warn!(error = %e, "a request for a node's pod details failed"),
            None => break,
        }
    }
    let (out, missing) = merge(view, answers);
    let mut headers = HeaderMap::new();
    if let Some(w) = warning(&missing) {
        tracing::info!("{w}");
        if let Some(h) = super::write_options::warning_header(&w) {
            headers.append(axum::http::header::WARNING, h);
        }
    }
    (out, headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::view::{NodeInfo, NodeState, NodeView};
    use crate::model::status::{ContainerStatus, Phase};

    fn status(node: &str, ns: &str, name: &str, id: &str) -> PodStatus {
        PodStatus {
            namespace: ns.into(),
            name: name.into(),
            node: node.into(),
            phase: Phase::Running,
            ready: true,
            containers: vec![ContainerStatus {
                name: "c".into(),
                ready: true,
                container_id: id.into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// A node of a test view: its name, state and pods (namespace, name).
    type Spec<'a> = (&'a str, NodeState, &'a [(&'a str, &'a str)]);

    fn view(nodes: &[Spec]) -> ClusterView {
        let mut v = ClusterView { self_name: "a".into(), ..Default::default() };
        for (name, state, pods) in nodes {
            let info =
                NodeInfo { name: name.to_string(), api_url: format!("https://{name}:7420"), ..Default::default() };
            let pods =
                pods.iter().map(|(ns, p)| (format!("{ns}/{p}"), Arc::new(status(name, ns, p, "").summary()))).collect();
            let n = NodeView {
                info: Arc::new(info),
                state: *state,
                since: 0,
                pods: Arc::new(pods),
                state_digest: Default::default(),
                extra: Default::default(),
            };
            v.nodes.insert(name.to_string().into(), n);
        }
        v
    }

    fn answer(node: &str, pods: &[(&str, &str, &str)]) -> NodePods {
        NodePods {
            node: node.into(),
            pods: pods.iter().map(|(ns, p, id)| (format!("{ns}/{p}"), status(node, ns, p, id))).collect(),
        }
    }

    fn filter(ns: Option<&str>, name: Option<&str>) -> Filter {
        Filter { namespace: ns.map(String::from), name: name.map(String::from) }
    }

    #[test]
    fn only_live_peers_that_run_a_wanted_pod_are_asked() {
        let v = view(&[
            ("a", NodeState::Ready, &[("default", "mine")]),
            ("b", NodeState::Ready, &[("default", "web-0")]),
            ("c", NodeState::Suspect, &[("dev", "db-0")]),
            ("d", NodeState::Dead, &[("default", "web-1")]),
            ("e", NodeState::Ready, &[]),
        ]);
        let names = |f: &Filter| to_ask(&v, f).into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(names(&filter(None, None)), ["b", "c"]);
        assert_eq!(names(&filter(Some("dev"), None)), ["c"]);
        assert_eq!(names(&filter(Some("default"), Some("web-0"))), ["b"]);
        assert!(names(&filter(Some("default"), Some("nothing"))).is_empty());
        assert_eq!(to_ask(&v, &filter(Some("dev"), None))[0].1, "https://c:7420");
    }

    #[test]
    fn answers_replace_summaries_of_pods_the_view_shows_there_and_nothing_else() {
        let v = view(&[
            ("a", NodeState::Ready, &[]),
            ("b", NodeState::Ready, &[("default", "web-0")]),
            ("c", NodeState::Ready, &[("default", "web-1")]),
            ("d", NodeState::Ready, &[("default", "web-2")]),
        ]);
        let answers = vec![
            // b answers for its pod, and for one the view does not show there.
            ("b".to_string(), Ok(answer("b", &[("default", "web-0", "docker://b0"), ("default", "web-9", "x")]))),
            // c does not answer in time.
            ("c".to_string(), Err("no answer within 2 s".to_string())),
            // d's address answers as another node.
            ("d".to_string(), Ok(answer("b", &[("default", "web-2", "docker://d2")]))),
        ];
        let (out, missing) = merge(&v, answers);
        let id_at = |node: &str, pod: &str| {
            out.nodes.get(node).unwrap().pods.get(pod).map(|s| s.containers[0].container_id.clone())
        };
        assert_eq!(id_at("b", "default/web-0").as_deref(), Some("docker://b0"));
        assert_eq!(id_at("b", "default/web-9"), None, "an answer cannot add a pod");
        assert_eq!(id_at("c", "default/web-1").as_deref(), Some(""), "a silent node keeps its summary");
        assert_eq!(id_at("d", "default/web-2").as_deref(), Some(""), "an answer for another node is refused");
        assert_eq!(
            missing,
            [("c".into(), "no answer within 2 s".into()), ("d".into(), "answered as node \"b\"".into())]
        );
        let w = warning(&missing).unwrap();
        assert!(
            w.starts_with("pod details missing from 2 node(s): c (no answer within 2 s), d (answered as node \"b\")"),
            "{w}"
        );
        assert_eq!(warning(&[]), None);
        // The view it started from is untouched.
        assert_eq!(v.nodes.get("b").unwrap().pods.get("default/web-0").unwrap().containers[0].container_id, "");
    }

    #[test]
    fn the_query_names_the_filter() {
        assert_eq!(filter(None, None).query(), "");
        assert_eq!(filter(Some("dev"), Some("web-0")).query(), "?namespace=dev&name=web-0");
        assert_eq!(filter(Some("dev"), Some("web 0&x=1")).query(), "?namespace=dev");
    }

    #[test]
    fn the_warning_reads_back_as_written() {
        let w = warning(&[("b".into(), "https://b:7420: \"closed\" \\ early".into())]).unwrap();
        let h = crate::api::write_options::warning_header(&w).unwrap();
        assert_eq!(crate::api::client::warning_text(h.to_str().unwrap()), w);
        assert_eq!(crate::api::client::warning_text("not a warning"), "not a warning");
    }
}
