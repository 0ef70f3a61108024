//! `shoal kubeconfig`: a kubeconfig for kubectl and the Kubernetes client
//! libraries: the cluster CA, the API token, and one context per node, so
//! that when the node in use is down a user switches to another
//! (`kubectl config use-context shoal-n2`). With `--write` it merges into
//! `$KUBECONFIG` or `~/.kube/config`, replacing only Shoal's own entries.
//!
//! Building and merging are pure (`build`, `merge`); the command around
//! them asks a node for the members' API URLs.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::{Value, json};

use super::CliError;
use super::args::KubeconfigArgs;
use super::commands::{api_token_of, client, cluster_ca};

/// A node's API as the cluster lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeApi {
    pub name: String,
    pub url: String,
}

/// The name this cluster's entries share: `shoal-` and a short hash of
/// its CA, so two Shoal clusters merge into one file side by side.
pub fn cluster_tag(ca_pem: &str) -> String {
    format!("shoal-{}", &blake3::hash(ca_pem.trim().as_bytes()).to_hex()[..8])
}

/// The context of node `name`.
pub fn context_name(prefix: &str, name: &str) -> String {
    format!("{prefix}-{name}")
}

/// A kubeconfig with one cluster and one context per node (all with the
/// same user: the token), its current context `current`'s.
pub fn build(ca_pem: &str, token: &str, nodes: &[NodeApi], prefix: &str, current: &str) -> Value {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem.trim().as_bytes());
    let tag = cluster_tag(ca_pem);
    let user = format!("{tag}-token");
    let clusters: Vec<Value> = nodes
        .iter()
        .map(|n| {
            json!({"name": context_name(prefix, &n.name), "cluster": {"server": n.url, "certificate-authority-data": ca}})
        })
        .collect();
    let contexts: Vec<Value> = nodes
        .iter()
        .map(|n| {
            let c = context_name(prefix, &n.name);
            json!({"name": c, "context": {"cluster": c, "user": user, "namespace": "default"}})
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": clusters,
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": contexts,
        "current-context": context_name(prefix, current),
    })
}

/// Merges `ours` into an existing kubeconfig: entries of the same name are
/// replaced, others kept; the current context becomes ours. An existing
/// file that is not a kubeconfig is an error, not overwritten.
pub fn merge(existing: Option<Value>, ours: &Value) -> Result<Value, String> {
    let Some(mut base) = existing.filter(|v| !v.is_null()) else {
        return Ok(ours.clone());
    };
    let Some(obj) = base.as_object_mut() else {
        return Err("it is not a kubeconfig (a YAML mapping with clusters, users and contexts)".into());
    };
    for key in ["clusters", "users", "contexts"] {
        let mine = ours[key].as_array().cloned().unwrap_or_default();
        let names: Vec<&Value> = mine.iter().map(|e| &e["name"]).collect();
        let list = obj.entry(key).or_insert_with(|| json!([]));
        if list.is_null() {
            *list = json!([]);
        }
        let Some(arr) = list.as_array_mut() else {
            return Err(format!("its {key:?} is not a list"));
        };
        arr.retain(|e| !names.contains(&&e["name"]));
        arr.extend(mine.iter().cloned());
    }
    obj.insert("current-context".into(), ours["current-context"].clone());
    obj.entry("apiVersion").or_insert_with(|| json!("v1"));
    obj.entry("kind").or_insert_with(|| json!("Config"));
    Ok(base)
}

/// Where `--write` goes: `--kubeconfig`, else the first of `$KUBECONFIG`,
/// else `~/.kube/config`.
fn target(a: &KubeconfigArgs) -> Result<PathBuf, CliError> {
    if let Some(p) = &a.kubeconfig {
        return Ok(p.clone());
    }
    if let Some(k) = std::env::var_os("KUBECONFIG").filter(|k| !k.is_empty())
        && let Some(first) = std::env::split_paths(&k).next()
    {
        return Ok(first);
    }
    let home = std::env::var_os("HOME").ok_or_else(|| CliError::Usage("no $HOME: pass --kubeconfig PATH".into()))?;
    Ok(Path::new(&home).join(".kube").join("config"))
}

pub async fn run(a: KubeconfigArgs) -> Result<(), CliError> {
    let ca = cluster_ca(&a.client).ok_or_else(|| {
        CliError::Usage(
            "no cluster CA: run this on a node of the cluster (it reads the data dir), or pass --ca-file".into(),
        )
    })?;
    let token = api_token_of(&a.client)
        .ok_or_else(|| CliError::Usage("no API token: run this on a node (data dir), or pass --token".into()))?;
    let v = client(&a.client).get_json("/shoal/v1/cluster").await?;
    let mut nodes: Vec<NodeApi> = v["nodes"]
        .as_array()
        .map(|ns| {
            ns.iter()
                .filter(|n| n["state"].as_str() != Some("Left"))
                .filter_map(|n| Some(NodeApi { name: n["name"].as_str()?.into(), url: n["apiUrl"].as_str()?.into() }))
                .collect()
        })
        .unwrap_or_default();
    nodes.sort_by(|x, y| x.name.cmp(&y.name));
    if nodes.is_empty() {
        return Err(CliError::Failed("the node listed no cluster members".into()));
    }
    let current = v["self"].as_str().map(str::to_string).unwrap_or_else(|| nodes[0].name.clone());
    let prefix = a.name.clone().unwrap_or_else(|| "shoal".into());
    let ours = build(&ca, &token, &nodes, &prefix, &current);
    if !a.write {
        print!("{}", serde_saphyr::to_string(&ours).map_err(|e| CliError::Usage(e.to_string()))?);
        return Ok(());
    }
    let path = target(&a)?;
    let existing: Option<Value> = match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().is_empty() => None,
        Ok(text) => Some(
            serde_saphyr::from_str(&text)
                .map_err(|e| CliError::Usage(format!("{}: not a kubeconfig I can merge into: {e}", path.display())))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(CliError::Usage(format!("{}: {e}", path.display()))),
    };
    let merged = merge(existing, &ours).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| CliError::Usage(format!("{}: {e}", dir.display())))?;
    }
    let text = serde_saphyr::to_string(&merged).map_err(|e| CliError::Usage(e.to_string()))?;
    crate::util::write_private(&path, &text).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
    eprintln!(
        "wrote {} contexts ({}) to {}; current context {}",
        nodes.len(),
        nodes.iter().map(|n| context_name(&prefix, &n.name)).collect::<Vec<_>>().join(", "),
        path.display(),
        context_name(&prefix, &current)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn nodes() -> Vec<NodeApi> {
        ["n1", "n2"]
            .iter()
            .enumerate()
            .map(|(i, n)| NodeApi { name: n.to_string(), url: format!("https://10.0.0.{}:7420", i + 1) })
            .collect()
    }

    #[test]
    fn one_context_per_node_sharing_the_ca_and_token() {
        let k = build(CA, "tok", &nodes(), "shoal", "n2");
        assert_eq!(k["current-context"], "shoal-n2");
        assert_eq!(k["contexts"].as_array().unwrap().len(), 2);
        assert_eq!(k["clusters"][1]["cluster"]["server"], "https://10.0.0.2:7420");
        let ca = k["clusters"][0]["cluster"]["certificate-authority-data"].as_str().unwrap();
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(ca).unwrap(), CA.trim().as_bytes());
        let user = k["contexts"][0]["context"]["user"].as_str().unwrap();
        assert_eq!(k["users"][0]["name"], user);
        assert_eq!(k["users"][0]["user"]["token"], "tok");
    }

    #[test]
    fn merging_replaces_our_entries_and_keeps_the_rest() {
        let other = json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "kind-dev",
            "clusters": [{"name": "kind-dev", "cluster": {"server": "https://127.0.0.1:6443"}},
                         {"name": "shoal-n1", "cluster": {"server": "https://old:7420"}}],
            "users": [{"name": "kind-dev", "user": {"token": "x"}}],
            "contexts": [{"name": "kind-dev", "context": {"cluster": "kind-dev", "user": "kind-dev"}}],
        });
        let ours = build(CA, "tok", &nodes(), "shoal", "n1");
        let m = merge(Some(other), &ours).unwrap();
        let names = |k: &str| {
            m[k].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_string()).collect::<Vec<_>>()
        };
        assert_eq!(names("clusters"), ["kind-dev", "shoal-n1", "shoal-n2"]);
        assert_eq!(m["clusters"][1]["cluster"]["server"], "https://10.0.0.1:7420", "the stale entry replaced");
        assert_eq!(names("contexts"), ["kind-dev", "shoal-n1", "shoal-n2"]);
        assert_eq!(m["current-context"], "shoal-n1");
        // Merging twice changes nothing more.
        assert_eq!(merge(Some(m.clone()), &ours).unwrap(), m);
        // Nothing there: ours as is. Not a mapping: refused.
        assert_eq!(merge(None, &ours).unwrap(), ours);
        assert!(merge(Some(json!(["a"])), &ours).is_err());
        assert!(merge(Some(json!({"clusters": "x"})), &ours).unwrap_err().contains("clusters"));
    }
}
