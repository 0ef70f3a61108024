//! The watch cache: this node's recent history of every object the API
//! lists, so that a watch can start from the version a list returned.
//!
//! Each version is the whole "world" (every listable object, rendered as
//! the API shows it) in a persistent map, so versions share what did not
//! change. A new version is made only when something changed. Versions
//! are numbered by this node: a `resourceVersion` such as `w3f9a01c2-118`
//! names this node's process (`3f9a01c2`, random at start) and a version
//! (118). Another node's, or an earlier process's, version is unknown here;
//! the watch answers 410 Expired and the client lists again, as it does
//! when a version is too old (Kubernetes clients are built for this).
//!
//! Objects carry their own `metadata.resourceVersion` (the stamp of their
//! last write, see `state::entry`). Watch events replace it with the
//! cache's version, which clients resume from; a write that quotes such a
//! version is translated back through `stamp_version`.
//!
//! The cache renders only while someone lists or watches, and for
//! `IDLE` after: an idle node does no work for it. The rendering and
//! refresh loop (I/O) is `run`; the history itself is pure and tested.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;

use super::server::Ctx;

/// How long the cache keeps rendering after the last list or watch.
pub const IDLE: Duration = Duration::from_secs(300);
/// Most versions kept.
pub const MAX_VERSIONS: usize = 1024;
/// Oldest version kept (a watch from an older one gets 410).
pub const MAX_AGE: Duration = Duration::from_secs(600);
/// Changes within this window are rendered together.
pub const COALESCE: Duration = Duration::from_millis(50);
/// Re-render at least this often while active (for inputs that do not
/// notify: this node's events).
pub const POLL: Duration = Duration::from_secs(1);

/// One object in the world: its resource (plural), namespace, name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WKey {
    pub resource: &'static str,
    pub namespace: String,
    pub name: String,
}

pub type World = imbl::OrdMap<WKey, Arc<Value>>;

/// A version of the world.
#[derive(Clone)]
pub struct Version {
    pub seq: u64,
    pub at: Instant,
    pub world: World,
}

/// Where a watch starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// No version given, or "0": the current objects as ADDED events.
    Now,
    /// After this version of this node's cache.
    After(u64),
    /// A version this cache never issued (another node's, an earlier
    /// process's, or an object's own stamp): why.
    Unknown(String),
}

/// The history, without I/O.
pub struct History {
    incarnation: u32,
    versions: VecDeque<Version>,
    next_seq: u64,
}

impl History {
    pub fn new(incarnation: u32) -> History {
        History { incarnation, versions: VecDeque::new(), next_seq: 1 }
    }

    /// The `resourceVersion` of a version.
    pub fn rv(&self, seq: u64) -> String {
        format!("w{:08x}-{seq}", self.incarnation)
    }

    /// Reads a `resourceVersion` a client sent.
    pub fn start(&self, rv: Option<&str>) -> Start {
        let rv = rv.unwrap_or_default();
        if rv.is_empty() || rv == "0" {
            return Start::Now;
        }
        let parsed = rv
            .strip_prefix('w')
            .and_then(|r| r.split_once('-'))
            .and_then(|(inc, seq)| Some((u32::from_str_radix(inc, 16).ok()?, seq.parse::<u64>().ok()?)));
        match parsed {
            Some((inc, seq)) if inc == self.incarnation && seq < self.next_seq => Start::After(seq),
            Some((inc, _)) if inc == self.incarnation => {
                Start::Unknown(format!("resourceVersion {rv:?} is newer than this node's newest; list again"))
            }
            Some(_) => Start::Unknown(format!(
                "resourceVersion {rv:?} was issued by another node or before this node restarted \
                 (versions are per node); list again"
            )),
            None => Start::Unknown(format!(
                "resourceVersion {rv:?} is not a list or watch version of this node \
                 (an object's own version cannot start a watch); list again"
            )),
        }
    }

    pub fn latest(&self) -> Option<&Version> {
        self.versions.back()
    }

    /// The version `seq`, if still kept.
    pub fn get(&self, seq: u64) -> Option<&Version> {
        let first = self.versions.front()?.seq;
        let v = self.versions.get(usize::try_from(seq.checked_sub(first)?).ok()?)?;
        (v.seq == seq).then_some(v)
    }

    /// The oldest version kept.
    pub fn oldest(&self) -> Option<u64> {
        self.versions.front().map(|v| v.seq)
    }

    /// Records the world as rendered now. Returns the new version's number,
    /// or the current one's if nothing changed. `gap`: versions were not
    /// recorded since the last one (the cache was idle), so none before
    /// this one may serve as a start.
    pub fn record(&mut self, items: Vec<(WKey, Value)>, now: Instant, gap: bool) -> u64 {
        if gap {
            self.versions.clear();
        }
        let prev = self.versions.back().map(|v| v.world.clone()).unwrap_or_default();
        let mut next = prev.clone();
        let mut seen: imbl::OrdSet<WKey> = imbl::OrdSet::new();
        let mut changed = false;
        for (k, v) in items {
            seen.insert(k.clone());
            match prev.get(&k) {
                Some(p) if **p == v => {}
                _ => {
                    next.insert(k, Arc::new(v));
                    changed = true;
                }
            }
        }
        for k in prev.keys() {
            if !seen.contains(k) {
                next.remove(k);
                changed = true;
            }
        }
        if !changed && let Some(v) = self.versions.back() {
            return v.seq;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.versions.push_back(Version { seq, at: now, world: next });
        while self.versions.len() > MAX_VERSIONS
            || self.versions.front().is_some_and(|v| now.duration_since(v.at) > MAX_AGE && self.versions.len() > 1)
        {
            self.versions.pop_front();
        }
        seq
    }
}

/// What a watch sees change between two versions, for one resource in one
/// namespace (or all), through a filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Added(Arc<Value>),
    Modified(Arc<Value>),
    Deleted(Arc<Value>),
}

/// The changes from `old` to `new` of `resource` in `namespace` (`None`:
/// all) among objects that pass `keep`. An object that stops passing is
/// Deleted, one that starts passing is Added, as Kubernetes does.
pub fn changes(
    old: &World,
    new: &World,
    resource: &str,
    namespace: Option<&str>,
    keep: &dyn Fn(&Value) -> bool,
) -> Vec<Change> {
    let scoped = |k: &WKey| k.resource == resource && namespace.is_none_or(|n| k.namespace == n);
    let mut out = Vec::new();
    for d in old.diff(new) {
        match d {
            imbl::ordmap::DiffItem::Add(k, v) if scoped(k) && keep(v) => out.push(Change::Added(v.clone())),
            imbl::ordmap::DiffItem::Remove(k, v) if scoped(k) && keep(v) => out.push(Change::Deleted(v.clone())),
            imbl::ordmap::DiffItem::Update { old: (k, o), new: (_, n) } if scoped(k) && !Arc::ptr_eq(o, n) => {
                match (keep(o), keep(n)) {
                    (true, true) => out.push(Change::Modified(n.clone())),
                    (false, true) => out.push(Change::Added(n.clone())),
                    (true, false) => out.push(Change::Deleted(n.clone())),
                    (false, false) => {}
                }
            }
            _ => {}
        }
    }
    out
}

/// The objects of `resource` in `namespace` that pass `keep`.
pub fn current(
    world: &World,
    resource: &str,
    namespace: Option<&str>,
    keep: &dyn Fn(&Value) -> bool,
) -> Vec<Arc<Value>> {
    world
        .iter()
        .filter(|(k, v)| k.resource == resource && namespace.is_none_or(|n| k.namespace == n) && keep(v))
        .map(|(_, v)| v.clone())
        .collect()
}

/// Renders every listable object (Secrets without their values: a watch
/// reveals them as it sends them).
pub fn render(ctx: &Ctx) -> Vec<(WKey, Value)> {
    use crate::model::Kind;
    let mut out = Vec::new();
    let mut add = |resource: &'static str, items: Vec<Value>| {
        for v in items {
            let ns = v.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default().to_string();
            let name = v.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
            out.push((WKey { resource, namespace: ns, name }, v));
        }
    };
    let (snap, plan, view) = (ctx.db.snapshot(), ctx.plan.borrow().clone(), ctx.view.borrow().clone());
    for (resource, kind) in [
        ("namespaces", Kind::Namespace),
        ("services", Kind::Service),
        ("configmaps", Kind::ConfigMap),
        ("secrets", Kind::Secret),
        ("deployments", Kind::Deployment),
        ("daemonsets", Kind::DaemonSet),
        ("jobs", Kind::Job),
        ("cronjobs", Kind::CronJob),
    ] {
        // Without revealing, rendering cannot fail.
        add(resource, super::handlers::objects(ctx, kind, None, false).unwrap_or_default());
    }
    add("nodes", super::handlers::nodes(ctx));
    add("pods", super::render::pods(&snap, &plan, &view, None));
    add("replicasets", super::rollouts::replicasets(&snap, &plan, &view, None));
    let events = super::handlers::events_json(ctx, None);
    add("events", events["items"].as_array().cloned().unwrap_or_default());
    out
}

/// The cache of one node.
pub struct WatchCache {
    history: Mutex<History>,
    /// The newest version's number (0: none yet).
    tx: watch::Sender<u64>,
    /// When it was last used, and whether its loop runs.
    activity: Mutex<(Instant, bool)>,
}

impl Default for WatchCache {
    fn default() -> Self {
        WatchCache::new(rand::random())
    }
}

impl WatchCache {
    pub fn new(incarnation: u32) -> WatchCache {
        WatchCache {
            history: Mutex::new(History::new(incarnation)),
            tx: watch::channel(0).0,
            activity: Mutex::new((Instant::now(), false)),
        }
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    pub fn rv(&self, seq: u64) -> String {
        self.history().rv(seq)
    }

    pub fn start(&self, rv: Option<&str>) -> Start {
        self.history().start(rv)
    }

    pub fn get(&self, seq: u64) -> Option<Version> {
        self.history().get(seq).cloned()
    }

    pub fn oldest(&self) -> Option<u64> {
        self.history().oldest()
    }

    pub fn latest(&self) -> Option<Version> {
        self.history().latest().cloned()
    }

    /// Marks the cache used and makes sure it runs; returns the newest
    /// version (rendering one first if the cache was idle).
    pub fn touch(&self, ctx: &Ctx) -> Version {
        let start = {
            let mut a = self.activity.lock().unwrap_or_else(|p| p.into_inner());
            a.0 = Instant::now();
            let start = !a.1;
            a.1 = true;
            start
        };
        if start {
            self.refresh(ctx, true);
            let ctx = ctx.clone();
            tokio::spawn(async move { run(ctx).await });
        }
        match self.latest() {
            Some(v) => v,
            None => {
                self.refresh(ctx, false);
                self.latest().unwrap_or(Version { seq: 0, at: Instant::now(), world: World::new() })
            }
        }
    }

    /// Renders the world and records it.
    pub fn refresh(&self, ctx: &Ctx, gap: bool) {
        let items = render(ctx);
        let seq = self.history().record(items, Instant::now(), gap);
        self.tx.send_if_modified(|s| std::mem::replace(s, seq) != seq);
    }

    /// The version a write's `metadata.resourceVersion` stands for: an
    /// object's own stamp version for a cache version of this node; the
    /// given one otherwise (and where the cache no longer has it, so that
    /// the write is refused as a conflict and the client reads again).
    pub fn stamp_version(&self, rv: &str, resource: &str, namespace: &str, name: &str) -> String {
        let h = self.history();
        let Start::After(seq) = h.start(Some(rv)) else { return rv.to_string() };
        let key =
            WKey { resource: static_resource(resource), namespace: namespace.to_string(), name: name.to_string() };
        h.get(seq)
            .and_then(|v| v.world.get(&key).cloned())
            .and_then(|o| o.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| rv.to_string())
    }
}

/// The name a resource has in the world's keys (discovery's).
fn static_resource(r: &str) -> &'static str {
    super::discovery::RESOURCES.iter().find(|x| x.name == r).map(|x| x.name).unwrap_or("")
}

/// Keeps the cache current while it is used: renders on every change of
/// the state, the plan or the membership view (coalesced), and every
/// `POLL`; stops after `IDLE` without use.
async fn run(ctx: Ctx) {
    let cache = &ctx.watch_cache;
    let (mut db, mut plan, mut view) = (ctx.db.subscribe(), ctx.plan.clone(), ctx.view.clone());
    loop {
        let open = tokio::select! {
            r = db.changed() => r.is_ok(),
            r = plan.changed() => r.is_ok(),
            r = view.changed() => r.is_ok(),
            _ = tokio::time::sleep(POLL) => true,
        };
        tokio::time::sleep(COALESCE).await;
        {
            let mut a = cache.activity.lock().unwrap_or_else(|p| p.into_inner());
            if !open || (a.0.elapsed() > IDLE && cache.tx.receiver_count() == 0) {
                a.1 = false;
                return;
            }
        }
        cache.refresh(&ctx, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(res: &'static str, ns: &str, name: &str, v: Value) -> (WKey, Value) {
        (WKey { resource: res, namespace: ns.into(), name: name.into() }, v)
    }

    fn obj(name: &str, app: &str, n: u64) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": app}}, "n": n})
    }

    #[test]
    fn versions_are_made_only_by_changes_and_diffs_name_them() {
        let mut h = History::new(0xabc);
        let t = Instant::now();
        let a = vec![item("pods", "default", "a", obj("a", "web", 1)), item("pods", "default", "b", obj("b", "db", 1))];
        let s1 = h.record(a.clone(), t, false);
        assert_eq!(h.record(a, t, false), s1, "nothing changed: no new version");
        let b =
            vec![item("pods", "default", "a", obj("a", "web", 2)), item("pods", "default", "c", obj("c", "web", 1))];
        let s2 = h.record(b, t, false);
        assert_eq!(s2, s1 + 1);
        let (w1, w2) = (h.get(s1).unwrap().world.clone(), h.get(s2).unwrap().world.clone());
        let all = changes(&w1, &w2, "pods", None, &|_| true);
        let names = |c: &[Change]| {
            c.iter()
                .map(|c| match c {
                    Change::Added(v) => format!("+{}", v["metadata"]["name"].as_str().unwrap()),
                    Change::Modified(v) => format!("~{}", v["metadata"]["name"].as_str().unwrap()),
                    Change::Deleted(v) => format!("-{}", v["metadata"]["name"].as_str().unwrap()),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&all), ["~a", "-b", "+c"]);
        let web = changes(&w1, &w2, "pods", None, &|v| v["metadata"]["labels"]["app"] == "web");
        assert_eq!(names(&web), ["~a", "+c"]);
        assert!(changes(&w1, &w2, "services", None, &|_| true).is_empty());
        assert!(changes(&w1, &w2, "pods", Some("other"), &|_| true).is_empty());
        // Leaving a selector is a deletion; entering it an addition.
        let w3 = {
            let s3 = h.record(vec![item("pods", "default", "a", obj("a", "db", 2))], t, false);
            h.get(s3).unwrap().world.clone()
        };
        assert_eq!(names(&changes(&w2, &w3, "pods", None, &|v| v["metadata"]["labels"]["app"] == "web")), ["-a", "-c"]);
        assert_eq!(names(&changes(&w2, &w3, "pods", None, &|v| v["metadata"]["labels"]["app"] == "db")), ["+a"]);
        assert_eq!(current(&w3, "pods", Some("default"), &|_| true).len(), 1);
    }

    #[test]
    fn versions_read_back_and_foreign_or_old_ones_do_not() {
        let mut h = History::new(0x1f);
        let t = Instant::now();
        let s1 = h.record(vec![item("pods", "d", "a", obj("a", "x", 1))], t, false);
        let rv = h.rv(s1);
        assert_eq!(rv, "w0000001f-1");
        assert_eq!(h.start(Some(&rv)), Start::After(s1));
        assert_eq!(h.start(None), Start::Now);
        assert_eq!(h.start(Some("0")), Start::Now);
        for other in ["w00000020-1", "w0000001f-9", "1733300000.0abc1234", "garbage"] {
            assert!(matches!(h.start(Some(other)), Start::Unknown(_)), "{other}");
        }
        // Old versions fall out; a gap (idle cache) forgets them all.
        for n in 0..(MAX_VERSIONS as u64 + 10) {
            h.record(vec![item("pods", "d", "a", obj("a", "x", n + 2))], t, false);
        }
        assert!(h.get(s1).is_none(), "beyond MAX_VERSIONS");
        assert_eq!(h.versions.len(), MAX_VERSIONS);
        let newest = h.latest().unwrap().seq;
        let later = h.record(vec![item("pods", "d", "a", obj("a", "x", 0))], t + MAX_AGE * 2, true);
        assert!(h.get(newest).is_none() && h.get(later).is_some());
        assert_eq!(h.oldest(), Some(later));
    }
}
