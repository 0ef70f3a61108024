//! `shoal cordon|uncordon|drain NODE`: node maintenance, and following a
//! drain until the node runs nothing but its DaemonSet pods.

use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{Value, json};

use super::CliError;
use super::args::NodeArgs;
use super::commands::client;

/// How often a drain's progress is polled.
const POLL: Duration = Duration::from_millis(500);

/// Ids (`namespace/name`) of every pod a DaemonSet controls.
async fn daemon_pods(c: &crate::api::client::Client) -> Result<Vec<String>, CliError> {
    let v = c.get_json("/api/v1/pods").await?;
    Ok(v.get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| p.pointer("/metadata/ownerReferences/0/kind").and_then(Value::as_str) == Some("DaemonSet"))
        .map(|p| {
            let m = |k: &str| p.pointer(&format!("/metadata/{k}")).and_then(Value::as_str).unwrap_or("").to_string();
            format!("{}/{}", m("namespace"), m("name"))
        })
        .collect())
}

pub async fn run(a: NodeArgs, action: &str) -> Result<(), CliError> {
    let c = client(&a.client);
    let v = c.send_json(Method::POST, &format!("/shoal/v1/nodes/{}/{action}", a.node), &json!({})).await?;
    let changed = v.get("changed").and_then(Value::as_bool).unwrap_or(true);
    match action {
        "cordon" => println!("node/{} {}", a.node, if changed { "cordoned" } else { "already cordoned" }),
        "uncordon" => println!("node/{} {}", a.node, if changed { "uncordoned" } else { "already uncordoned" }),
        _ => {
            println!("node/{} cordoned", a.node);
            let timeout = humantime::parse_duration(&a.timeout)
                .map_err(|e| CliError::Usage(format!("--timeout {:?}: {e}", a.timeout)))?;
            let deadline = Instant::now() + timeout;
            let mut last: Vec<String> = Vec::new();
            let mut told = false;
            loop {
                let n = c.get_json(&format!("/api/v1/nodes/{}", a.node)).await?;
                // A DaemonSet's pod belongs on its node: it stays, as with
                // `kubectl drain --ignore-daemonsets`.
                let daemons = daemon_pods(&c).await?;
                let (kept, pods): (Vec<String>, Vec<String>) = n
                    .pointer("/status/shoal/pods")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .partition(|p| daemons.contains(p));
                if !kept.is_empty() && !told {
                    println!("ignoring DaemonSet-managed pods: {}", kept.join(", "));
                    told = true;
                }
                for gone in last.iter().filter(|p| !pods.contains(p)) {
                    println!("pod/{gone} moved");
                }
                if pods.is_empty() {
                    println!("node/{} drained", a.node);
                    return Ok(());
                }
                if pods != last {
                    println!("{} pod(s) still on node/{}: {}", pods.len(), a.node, pods.join(", "));
                }
                last = pods;
                if Instant::now() > deadline {
                    return Err(CliError::Failed(format!(
                        "timed out draining node {:?}: {} pod(s) left ({})",
                        a.node,
                        last.len(),
                        last.join(", ")
                    )));
                }
                tokio::time::sleep(POLL).await;
            }
        }
    }
    Ok(())
}
