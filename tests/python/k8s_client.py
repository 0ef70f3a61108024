"""The official Kubernetes Python client (`kubernetes` on PyPI) against a
Shoal node: typed reads (strict decoding), writes, patches, the scale
subresource, selectors, logs, exec, watches, DeleteOptions,
deletecollection and create_from_yaml. Run by tests/python_client.rs
with the kubeconfig `shoal kubeconfig` writes and the number of nodes; exits non-zero with the
first failed check."""

import sys
import threading
import time

from kubernetes import client, config, utils, watch
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream

config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()
apps = client.AppsV1Api()
NS = "default"


def check(cond, what):
    if not cond:
        sys.exit(f"FAILED: {what}")
    print(f"ok: {what}", flush=True)


def poll(secs, what, f):
    deadline = time.time() + secs
    last = None
    while time.time() < deadline:
        last = f()
        if last:
            return last
        time.sleep(0.1)
    sys.exit(f"FAILED: {what} within {secs}s (last: {last!r})")


# Nodes decode strictly into V1Node.
nodes = v1.list_node().items
WANT_NODES = int(sys.argv[2]) if len(sys.argv) > 2 else 1
check(len(nodes) == WANT_NODES and all(n.status.node_info.architecture for n in nodes),
      f"list_node decodes {WANT_NODES} nodes")
check(v1.read_node(nodes[0].metadata.name).metadata.name == nodes[0].metadata.name, "read_node")

# ConfigMaps: create, read, patch (a dict is a strategic merge patch), replace, delete.
cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-cm", labels={"from": "python"}), data={"k": "v"})
v1.create_namespaced_config_map(NS, cm)
check(v1.read_namespaced_config_map("py-cm", NS).data == {"k": "v"}, "create and read a ConfigMap")
v1.patch_namespaced_config_map("py-cm", NS, {"data": {"k2": "v2"}})
got = v1.read_namespaced_config_map("py-cm", NS)
check(got.data == {"k": "v", "k2": "v2"}, "patch a ConfigMap")
got.data["k"] = "changed"
v1.replace_namespaced_config_map("py-cm", NS, got)
check(v1.read_namespaced_config_map("py-cm", NS).data["k"] == "changed", "replace a ConfigMap")
try:
    v1.replace_namespaced_config_map("py-cm", NS, got)
    check(False, "a replace with a stale resourceVersion is refused")
except ApiException as e:
    check(e.status == 409, f"a stale replace gets 409 Conflict (got {e.status})")
check([c.metadata.name for c in v1.list_namespaced_config_map(NS, label_selector="from=python").items] == ["py-cm"],
      "list with a label selector")
check(v1.list_namespaced_config_map(NS, label_selector="from=elsewhere").items == [], "a selector that matches nothing")

# A Deployment: create, scale through /scale, pods by selector, logs.
dep = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "py-web"},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "py-web"}},
             "template": {"metadata": {"labels": {"app": "py-web"}},
                          "spec": {"terminationGracePeriodSeconds": 1,
                                   "containers": [{"name": "main", "command": ["sh", "-c", "echo hello-from-py-web; exec sleep 3600"]}]}}},
}
apps.create_namespaced_deployment(NS, dep)
apps.patch_namespaced_deployment_scale("py-web", NS, {"spec": {"replicas": 2}})
check(apps.read_namespaced_deployment_scale("py-web", NS).spec.replicas == 2, "scale through /scale")
apps.patch_namespaced_deployment("py-web", NS, {"spec": {"template": {"spec": {"containers": [
    {"name": "main", "env": [{"name": "FROM_PATCH", "value": "1"}]}]}}}})
c = apps.read_namespaced_deployment("py-web", NS).spec.template.spec.containers[0]
check(c.command[0] == "sh" and [e.name for e in c.env] == ["FROM_PATCH"], "a strategic patch merges a container by name")
def running_pods():
    pods = [p for p in v1.list_namespaced_pod(NS, label_selector="app=py-web").items if p.status.phase == "Running"]
    return pods if len(pods) == 2 else None


pods = poll(60, "two py-web pods Running", running_pods)
log = poll(30, "a pod's log", lambda: "hello-from-py-web" in v1.read_namespaced_pod_log(pods[0].metadata.name, NS) or None)
check(log, "read_namespaced_pod_log")

# exec (WebSocket, v4.channel.k8s.io), on every pod: some run on another
# node than the one asked, which relays.
for p in pods:
    out = stream(v1.connect_get_namespaced_pod_exec, p.metadata.name, NS,
                 command=["sh", "-c", "echo $SHOAL_POD_NAME"], stderr=True, stdin=False, stdout=True, tty=False)
    check(out.strip() == p.metadata.name, f"exec in {p.metadata.name} (got {out!r})")
ws = stream(v1.connect_get_namespaced_pod_exec, pods[0].metadata.name, NS, command=["sh", "-c", "read x; exit 6"],
            stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
ws.write_stdin("line\n")
ws.run_forever(timeout=20)
check(ws.returncode == 6, f"exec's exit code comes back (got {ws.returncode})")

# Watches: from a list's resourceVersion, the changes since.
rv = v1.list_namespaced_config_map(NS).metadata.resource_version
threading.Timer(0.5, lambda: v1.create_namespaced_config_map(
    NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-watched"), data={"a": "b"}))).start()
seen = []
w = watch.Watch()
for ev in w.stream(v1.list_namespaced_config_map, NS, resource_version=rv, timeout_seconds=20):
    seen.append((ev["type"], ev["object"].metadata.name))
    if ("ADDED", "py-watched") in seen:
        w.stop()
check(("ADDED", "py-watched") in seen, f"a watch from a list's version sees the new object ({seen})")
check(all(name != "py-cm" for _, name in seen), "and not what the list already had")
# Without a version: every current object first.
names = set()
w = watch.Watch()
for ev in w.stream(v1.list_namespaced_config_map, NS, timeout_seconds=2):
    names.add(ev["object"].metadata.name)
check({"py-cm", "py-watched"} <= names, f"a watch without a version starts with every object ({names})")
# A version this node never issued: 410, which the client raises.
try:
    for ev in watch.Watch().stream(v1.list_namespaced_config_map, NS, resource_version="w00000000-1", timeout_seconds=5):
        pass
    check(False, "a foreign resourceVersion is refused")
except ApiException as e:
    check(e.status == 410, f"a foreign resourceVersion gets 410 Gone (got {e.status})")

# DeleteOptions: a precondition that fails deletes nothing (409).
cm = v1.read_namespaced_config_map("py-watched", NS)
try:
    v1.delete_namespaced_config_map("py-watched", NS, body=client.V1DeleteOptions(
        preconditions=client.V1Preconditions(uid="not-" + cm.metadata.uid)))
    check(False, "a delete whose uid precondition fails is refused")
except ApiException as e:
    check(e.status == 409 and "Precondition failed" in e.body, f"a failed precondition is 409 ({e.status} {e.body})")
v1.delete_namespaced_config_map("py-watched", NS, body=client.V1DeleteOptions(
    preconditions=client.V1Preconditions(uid=cm.metadata.uid, resource_version=cm.metadata.resource_version)))
# deletecollection, by label selector: only what it selects.
for i in range(3):
    v1.create_namespaced_config_map(NS, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=f"batch-{i}", labels={"batch": "yes" if i < 2 else "no"})))
v1.delete_collection_namespaced_config_map(NS, label_selector="batch=yes")
left = sorted(c.metadata.name for c in v1.list_namespaced_config_map(NS, label_selector="batch").items)
check(left == ["batch-2"], f"deletecollection deletes what its selector selects ({left})")
v1.delete_namespaced_config_map("batch-2", NS)
# create_from_yaml: a multi-document file, each object by its kind's API.
import os, tempfile
with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
    f.write("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-yaml-1}\ndata: {a: '1'}\n---\n"
            "apiVersion: v1\nkind: Service\nmetadata: {name: from-yaml-svc}\n"
            "spec: {selector: {app: py-web}, ports: [{port: 80, targetPort: 8080}]}\n")
made = utils.create_from_yaml(client.ApiClient(), f.name, namespace=NS)
os.unlink(f.name)
check(len(made) == 2, f"create_from_yaml created both objects ({made})")
check(v1.read_namespaced_service("from-yaml-svc", NS).spec.ports[0].port == 80, "the Service from create_from_yaml")
v1.delete_namespaced_service("from-yaml-svc", NS)
v1.delete_namespaced_config_map("from-yaml-1", NS)
for name in ["py-cm"]:
    v1.delete_namespaced_config_map(name, NS)
apps.delete_namespaced_deployment("py-web", NS)
check(v1.list_namespaced_config_map(NS, label_selector="from=python").items == [], "deleted")
print("ALL OK")
