//! The desired state of this node: the one owner of the CRDT map.
//!
//! Owns the in-memory map, its digests and its on-disk copy, and publishes a
//! decoded `Snapshot` on every change. Local writes get HLC stamps here;
//! remote entries are validated here before they are merged (never applied
//! when malformed). Replication over the network lives in `sync.rs`; the merge
//! rule itself in `merge.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use super::digest::Digests;
use super::entry::{Entry, Key, MAX_VALUE_BYTES, Stamp, kinds};
use super::merge;
use super::store::{Change, Store, StoreError};
use crate::model::cron::CronRecord;
use crate::model::node::{Maintenance, NodeMaintenance};
use crate::model::pods::PodResult;
use crate::model::revision::{Revision, Revisions};
use crate::model::{Kind, Object, ObjectKey, parse};

const META_WATERMARK: &str = "gc_watermark";

/// An object as the cluster holds it, with who wrote it last and when.
#[derive(Debug, Clone)]
pub struct StoredObject {
    pub object: Object,
    pub stamp: Stamp,
    pub origin: String,
}

/// CronJob records keyed by (namespace, CronJob name).
pub type CronRecords = imbl::OrdMap<(String, String), Arc<CronRecord>>;
pub use crate::model::pods::JobEnds;

/// A decoded, immutable view of the desired state.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Increases on every change seen by this node.
    pub rev: u64,
    pub objects: imbl::OrdMap<ObjectKey, Arc<StoredObject>>,
    /// Job pod outcomes keyed by (namespace, pod name).
    pub pod_results: crate::model::pods::Results,
    /// Deployment revisions keyed by (namespace, `<deployment>-<hash>`).
    pub revisions: Revisions,
    /// Cordoned and draining nodes, by name.
    pub maintenance: Maintenance,
    /// CronJob records keyed by (namespace, CronJob name).
    pub cron_records: CronRecords,
    /// Job ends (deadline passed) keyed by (namespace, Job name).
    pub job_ends: JobEnds,
    pub entries: usize,
    pub tombstones: usize,
}

impl Snapshot {
    /// ConfigMap `name` of namespace `ns`, if there is one.
    pub fn config_map(&self, ns: &str, name: &str) -> Option<Arc<crate::model::ConfigMap>> {
        let key = ObjectKey { kind: crate::model::Kind::ConfigMap, namespace: ns.to_string(), name: name.to_string() };
        match &self.objects.get(&key)?.object {
            crate::model::Object::ConfigMap(c) => Some(Arc::new(c.clone())),
            _ => None,
        }
    }
    /// Secret `name` of namespace `ns` (sealed), if there is one.
    pub fn secret(&self, ns: &str, name: &str) -> Option<&crate::model::Secret> {
        let key = ObjectKey { kind: Kind::Secret, namespace: ns.to_string(), name: name.to_string() };
        match &self.objects.get(&key)?.object {
            Object::Secret(s) => Some(s),
            _ => None,
        }
    }
    /// What the pods of Jobs have done: their results and the Jobs' ends.
    pub fn job_facts(&self) -> crate::model::pods::JobFacts<'_> {
        crate::model::pods::JobFacts { results: &self.pod_results, ends: &self.job_ends }
    }
    pub fn get(&self, key: &ObjectKey) -> Option<&Arc<StoredObject>> {
        self.objects.get(key)
    }

    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Arc<StoredObject>> {
        self.objects.values().filter(move |o| o.object.kind() == kind)
    }

    pub fn namespace_exists(&self, ns: &str) -> bool {
        ns == crate::model::DEFAULT_NAMESPACE
            || self.objects.contains_key(&ObjectKey {
                kind: Kind::Namespace,
                namespace: String::new(),
                name: ns.to_string(),
            })
    }
}

/// Why a remote entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("malformed key")]
    BadKey,
    #[error("value larger than MAX_VALUE_BYTES ({MAX_VALUE_BYTES})")]
    TooLarge,
    #[error("timestamp too far in the future: {0}")]
    FutureStamp(String),
    #[error("invalid value: {0}")]
    Invalid(String),
    #[error("unknown entry kind {0:?}")]
    UnknownKind(String),
    #[error("older than the tombstone horizon and unknown here (it may have been deleted)")]
    BeyondHorizon,
}

/// Counters of what this node's state did (exported as metrics).
#[derive(Debug, Default)]
pub struct StateCounters {
    pub local_writes: AtomicU64,
    pub remote_applied: AtomicU64,
    pub remote_refused: AtomicU64,
    pub tombstones_collected: AtomicU64,
    /// Anti-entropy rounds this node started.
    pub ae_rounds: AtomicU64,
}

struct Inner {
    map: BTreeMap<Key, Entry>,
    /// Decoded views, persistent maps: a snapshot is an O(1) clone and an
    /// update O(log n), so a write costs the same with 10 or 10,000 objects.
    objects: imbl::OrdMap<ObjectKey, Arc<StoredObject>>,
    pod_results: crate::model::pods::Results,
    revisions: Revisions,
    maintenance: Maintenance,
    cron_records: CronRecords,
    job_ends: JobEnds,
    tombstones: usize,
    digests: Digests,
    store: Store,
    /// Largest stamp time of a garbage-collected tombstone.
    watermark: u64,
    rev: u64,
}

enum Decoded {
    Object(Arc<StoredObject>),
    PodResult(PodResult),
    Revision(Arc<Revision>),
    Maintenance(NodeMaintenance),
    CronRecord(Arc<CronRecord>),
    JobEnd(Arc<crate::model::pods::JobEnd>),
    Other,
}

fn decode(e: &Entry) -> Result<Option<Decoded>, Refusal> {
    let Some(v) = &e.value else { return Ok(None) };
    if let Some(kind) = Kind::from_manifest(&e.key.kind) {
        let json: serde_json::Value = serde_json::from_slice(v).map_err(|err| Refusal::Invalid(err.to_string()))?;
        let mut obj = parse::parse_stored(json).map_err(|e| Refusal::Invalid(e.0))?;
        let ok = obj.kind() == kind
            && obj.meta().name == e.key.name
            && (if kind.namespaced() {
                obj.meta().namespace.as_deref() == Some(e.key.namespace.as_str())
            } else {
                e.key.namespace.is_empty()
            });
        if !ok {
            return Err(Refusal::Invalid("object does not match its key".into()));
        }
        if let Object::Secret(s) = &obj
            && (s.sealed.is_none() || !s.data.is_empty() || !s.string_data.is_empty())
        {
            return Err(Refusal::Invalid(
                "a Secret must be sealed with the cluster data key: this one holds its data in the clear".into(),
            ));
        }
        obj.meta_mut().resource_version = Some(e.stamp.resource_version());
        return Ok(Some(Decoded::Object(Arc::new(StoredObject {
            object: obj,
            stamp: e.stamp,
            origin: e.origin.clone(),
        }))));
    }
    match e.key.kind.as_str() {
        kinds::POD_RESULT => serde_json::from_slice::<PodResult>(v)
            .map(|r| Some(Decoded::PodResult(r)))
            .map_err(|err| Refusal::Invalid(err.to_string())),
        kinds::REVISION => {
            let r: Revision = serde_json::from_slice(v).map_err(|err| Refusal::Invalid(err.to_string()))?;
            if r.key_name() != e.key.name {
                return Err(Refusal::Invalid("revision does not match its key".into()));
            }
            Ok(Some(Decoded::Revision(Arc::new(r))))
        }
        kinds::NODE_MAINTENANCE => {
            if !e.key.namespace.is_empty() || crate::model::names::dns_label(&e.key.name, 63).is_err() {
                return Err(Refusal::Invalid("a node's maintenance is keyed by the node's name".into()));
            }
            serde_json::from_slice::<NodeMaintenance>(v)
                .map(|m| Some(Decoded::Maintenance(m)))
                .map_err(|err| Refusal::Invalid(err.to_string()))
        }
        kinds::CRON_RECORD => serde_json::from_slice::<CronRecord>(v)
            .map(|r| Some(Decoded::CronRecord(Arc::new(r))))
            .map_err(|err| Refusal::Invalid(err.to_string())),
        kinds::JOB_END => serde_json::from_slice::<crate::model::pods::JobEnd>(v)
            .map(|r| Some(Decoded::JobEnd(Arc::new(r))))
            .map_err(|err| Refusal::Invalid(err.to_string())),
        kinds::JOIN_TOKEN => {
            let ok = if e.key.name == "current" {
                std::str::from_utf8(v).ok().is_some_and(|t| crate::net::token::JoinToken::parse(t).is_ok())
            } else {
                serde_json::from_slice::<crate::net::token::TokenRecord>(v).is_ok()
            };
            if ok { Ok(Some(Decoded::Other)) } else { Err(Refusal::Invalid("malformed join token record".into())) }
        }
        other => Err(Refusal::UnknownKind(other.to_string())),
    }
}

/// Outcome of merging remote entries.
#[derive(Debug, Default)]
pub struct MergeOutcome {
    /// Entries that won and are now stored here.
    pub applied: Vec<Entry>,
    pub refused: Vec<(Key, Refusal)>,
}

/// The desired state of this node.
pub struct StateDb {
    inner: Mutex<Inner>,
    /// Replaced when the node's clock is stepped (`clock_stepped`).
    hlc: std::sync::RwLock<uhlc::HLC>,
    clock: fn() -> uhlc::NTP64,
    max_skew: Duration,
    node_name: String,
    tx: watch::Sender<Arc<Snapshot>>,
    pub counters: StateCounters,
    /// No disk behind it (netsim): operations run inline, never on the
    /// blocking pool, so virtual time stays exact.
    in_memory: bool,
}

/// A state operation on the blocking pool did not finish (it panicked or
/// the runtime is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("state operation did not complete: {0}")]
pub struct RunError(String);

/// Runs a state operation: inline when the store is in memory, else on the
/// blocking pool (it may fsync).
pub async fn run<T: Send + 'static>(
    db: &Arc<StateDb>,
    f: impl FnOnce(&StateDb) -> T + Send + 'static,
) -> Result<T, RunError> {
    if db.in_memory {
        return Ok(f(db));
    }
    let db = db.clone();
    tokio::task::spawn_blocking(move || f(&db)).await.map_err(|e| RunError(e.to_string()))
}

/// An HLC that never issues a stamp below one already stored (the clock
/// may have stepped back).
fn new_hlc(node_name: &str, clock: fn() -> uhlc::NTP64, max_skew: Duration, inner: &Inner) -> uhlc::HLC {
    let hlc = uhlc::HLCBuilder::new().with_id(hlc_id(node_name)).with_clock(clock).with_max_delta(max_skew).build();
    if let Some(max) = inner.map.values().map(|e| e.stamp).max() {
        let ts = uhlc::Timestamp::new(uhlc::NTP64(max.time), *hlc.get_id());
        let _ = hlc.update_with_timestamp(&ts);
    }
    hlc
}

/// HLC id of a node: blake3 of its name, 16 bytes (never zero).
pub fn hlc_id(node_name: &str) -> uhlc::ID {
    let mut b = [0u8; 16];
    b.copy_from_slice(&blake3::hash(node_name.as_bytes()).as_bytes()[..16]);
    b[15] |= 1;
    uhlc::ID::try_from(b).unwrap_or_else(|_| uhlc::ID::rand())
}

impl StateDb {
    /// Opens (or creates) the state at `path`. `clock` gives NTP64 time: the
    /// system clock on a real node, virtual time in netsim.
    pub fn open(
        path: &Path,
        node_name: &str,
        clock: fn() -> uhlc::NTP64,
        max_skew: Duration,
    ) -> Result<StateDb, StoreError> {
        Self::with_store(Store::open(path)?, false, node_name, clock, max_skew)
    }

    /// A state kept in memory only (netsim).
    pub fn in_memory(node_name: &str, clock: fn() -> uhlc::NTP64, max_skew: Duration) -> Result<StateDb, StoreError> {
        Self::with_store(Store::in_memory()?, true, node_name, clock, max_skew)
    }

    fn with_store(
        store: Store,
        in_memory: bool,
        node_name: &str,
        clock: fn() -> uhlc::NTP64,
        max_skew: Duration,
    ) -> Result<StateDb, StoreError> {
        let watermark = store
            .get_meta(META_WATERMARK)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0);
        let mut inner = Inner {
            map: BTreeMap::new(),
            objects: imbl::OrdMap::new(),
            pod_results: imbl::OrdMap::new(),
            revisions: imbl::OrdMap::new(),
            maintenance: imbl::OrdMap::new(),
            cron_records: imbl::OrdMap::new(),
            job_ends: imbl::OrdMap::new(),
            tombstones: 0,
            digests: Digests::default(),
            store,
            watermark,
            rev: 1,
        };
        for e in inner.store.load()? {
            if let Err(r) = decode(&e) {
                tracing::warn!(key = %e.key, reason = %r, "stored entry no longer decodes; kept but unused");
            }
            install(&mut inner, e);
        }
        let hlc = new_hlc(node_name, clock, max_skew, &inner);
        let snap = Arc::new(build_snapshot(&inner));
        let (tx, _) = watch::channel(snap);
        Ok(StateDb {
            inner: Mutex::new(inner),
            hlc: std::sync::RwLock::new(hlc),
            clock,
            max_skew,
            node_name: node_name.to_string(),
            tx,
            counters: StateCounters::default(),
            in_memory,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a consistent map (changes are
        // applied after the store commits), so a poisoned lock is usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    fn hlc(&self) -> std::sync::RwLockReadGuard<'_, uhlc::HLC> {
        self.hlc.read().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh HLC stamp (also "now" for cluster-set timestamps).
    pub fn now(&self) -> Stamp {
        Stamp::from_hlc(&self.hlc().new_timestamp())
    }

    /// The node's clock was stepped (corrected to the cluster's time): the
    /// HLC restarts from the newest stored stamp, forgetting stamps it
    /// issued or heard on the old clock but never stored, so that a clock
    /// that was ahead does not keep stamping the future.
    pub fn clock_stepped(&self) {
        let inner = self.lock();
        let fresh = new_hlc(&self.node_name, self.clock, self.max_skew, &inner);
        *self.hlc.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.tx.borrow().clone()
    }

    /// Writes values (or tombstones, `None`) stamped now, durably, as one
    /// transaction. Returns the stored entries (to replicate).
    pub fn write(&self, changes: Vec<(Key, Option<Vec<u8>>)>) -> Result<Vec<Entry>, StoreError> {
        let mut inner = self.lock();
        let mut entries = Vec::with_capacity(changes.len());
        for (key, value) in changes {
            entries.push(Entry { key, stamp: self.now(), origin: self.node_name.clone(), value });
        }
        let puts: Vec<Change<'_>> = entries.iter().map(Change::Put).collect();
        inner.store.commit(&puts, &[])?;
        for e in &entries {
            install(&mut inner, e.clone());
        }
        self.counters.local_writes.fetch_add(entries.len() as u64, Ordering::Relaxed);
        self.publish(&mut inner);
        Ok(entries)
    }

    /// Checks a remote entry without applying it.
    fn check_remote(&self, inner: &Inner, e: &Entry) -> Result<(), Refusal> {
        if !e.key.is_valid() || e.origin.len() > 253 {
            return Err(Refusal::BadKey);
        }
        if e.value.as_ref().is_some_and(|v| v.len() > MAX_VALUE_BYTES) {
            return Err(Refusal::TooLarge);
        }
        let ts = uhlc::Timestamp::new(
            uhlc::NTP64(e.stamp.time),
            uhlc::ID::try_from(e.stamp.node.to_le_bytes()).map_err(|_| Refusal::BadKey)?,
        );
        self.hlc().update_with_timestamp(&ts).map_err(|err| Refusal::FutureStamp(err.to_string()))?;
        if !inner.map.contains_key(&e.key) && e.stamp.time <= inner.watermark {
            return Err(Refusal::BeyondHorizon);
        }
        decode(e).map(|_| ())
    }

    /// Validates and merges entries from a peer; winners are stored durably
    /// before this returns. Malformed entries are refused, counted, logged.
    pub fn merge_remote(&self, entries: Vec<Entry>) -> Result<MergeOutcome, StoreError> {
        let mut inner = self.lock();
        let mut out = MergeOutcome::default();
        let mut winners: BTreeMap<Key, Entry> = BTreeMap::new();
        for e in entries {
            if let Err(r) = self.check_remote(&inner, &e) {
                tracing::warn!(key = %e.key, origin = %e.origin, reason = %r, "refused entry from peer");
                self.counters.remote_refused.fetch_add(1, Ordering::Relaxed);
                out.refused.push((e.key, r));
                continue;
            }
            let current = winners.get(&e.key).or_else(|| inner.map.get(&e.key));
            if merge::wins(&e, current) {
                winners.insert(e.key.clone(), e);
            }
        }
        if winners.is_empty() {
            return Ok(out);
        }
        let puts: Vec<Change<'_>> = winners.values().map(Change::Put).collect();
        inner.store.commit(&puts, &[])?;
        for e in winners.into_values() {
            install(&mut inner, e.clone());
            out.applied.push(e);
        }
        self.counters.remote_applied.fetch_add(out.applied.len() as u64, Ordering::Relaxed);
        self.publish(&mut inner);
        Ok(out)
    }

    /// Forgets tombstones older than `horizon` (NTP64 time) and raises the
    /// watermark below which unknown remote entries are refused.
    pub fn collect_tombstones(&self, horizon: u64) -> Result<usize, StoreError> {
        let mut inner = self.lock();
        let expired = merge::expired_tombstones(&inner.map, horizon);
        if expired.is_empty() {
            return Ok(0);
        }
        let new_mark = expired
            .iter()
            .filter_map(|k| inner.map.get(k))
            .map(|e| e.stamp.time)
            .max()
            .unwrap_or(0)
            .max(inner.watermark);
        let forgets: Vec<Change<'_>> = expired.iter().map(Change::Forget).collect();
        inner.store.commit(&forgets, &[(META_WATERMARK, new_mark.to_le_bytes().to_vec())])?;
        for k in &expired {
            forget(&mut inner, k);
        }
        inner.watermark = new_mark;
        self.counters.tombstones_collected.fetch_add(expired.len() as u64, Ordering::Relaxed);
        self.publish(&mut inner);
        Ok(expired.len())
    }

    /// Drops entries a peer no longer holds that are older than the peer's
    /// watermark: they were deleted there and the tombstone collected while
    /// this node was away longer than the horizon. Returns how many.
    pub fn drop_beyond_horizon(&self, keys: &[Key], peer_watermark: u64) -> Result<usize, StoreError> {
        let mut inner = self.lock();
        let doomed: Vec<Key> = keys
            .iter()
            .filter(|k| inner.map.get(*k).is_some_and(|e| e.stamp.time <= peer_watermark))
            .cloned()
            .collect();
        if doomed.is_empty() {
            return Ok(0);
        }
        let mark = inner.watermark.max(peer_watermark);
        let forgets: Vec<Change<'_>> = doomed.iter().map(Change::Forget).collect();
        inner.store.commit(&forgets, &[(META_WATERMARK, mark.to_le_bytes().to_vec())])?;
        for k in &doomed {
            forget(&mut inner, k);
        }
        inner.watermark = mark;
        self.publish(&mut inner);
        Ok(doomed.len())
    }

    pub fn watermark(&self) -> u64 {
        self.lock().watermark
    }

    pub fn get(&self, key: &Key) -> Option<Entry> {
        self.lock().map.get(key).cloned()
    }

    /// `f` of the entry of `key`, without a copy of it (an observer that
    /// reads many keys of many stores, netsim's, needs only a flag or a
    /// stamp of each).
    pub fn peek<R>(&self, key: &Key, f: impl FnOnce(&Entry) -> R) -> Option<R> {
        self.lock().map.get(key).map(f)
    }

    /// Root digest and entry count.
    pub fn summary(&self) -> ([u8; 32], u64) {
        let inner = self.lock();
        (inner.digests.root(), inner.map.len() as u64)
    }

    pub fn bucket_digests(&self) -> Vec<[u8; 16]> {
        self.lock().digests.buckets().to_vec()
    }

    /// `(key, stamp)` of every entry in the given buckets.
    pub fn stamps_in_buckets(&self, buckets: &[u16]) -> Vec<(Key, Stamp)> {
        let set: std::collections::BTreeSet<u16> = buckets.iter().copied().collect();
        let inner = self.lock();
        inner
            .map
            .values()
            .filter(|e| set.contains(&(super::digest::bucket_of(&e.key) as u16)))
            .map(|e| (e.key.clone(), e.stamp))
            .collect()
    }

    /// Entries for the given keys that this node holds.
    pub fn entries_for(&self, keys: &[Key]) -> Vec<Entry> {
        let inner = self.lock();
        keys.iter().filter_map(|k| inner.map.get(k).cloned()).collect()
    }

    fn publish(&self, inner: &mut Inner) {
        inner.rev += 1;
        let snap = Arc::new(build_snapshot(inner));
        self.tx.send_replace(snap);
    }
}

/// Where a key's decoded value lives in the views.
fn object_key_of(k: &Key) -> Option<ObjectKey> {
    Kind::from_manifest(&k.kind).map(|kind| ObjectKey { kind, namespace: k.namespace.clone(), name: k.name.clone() })
}

fn unview(inner: &mut Inner, k: &Key) {
    if let Some(ok) = object_key_of(k) {
        inner.objects.remove(&ok);
    } else if k.kind == kinds::POD_RESULT {
        inner.pod_results.remove(&(k.namespace.clone(), k.name.clone()));
    } else if k.kind == kinds::REVISION {
        inner.revisions.remove(&(k.namespace.clone(), k.name.clone()));
    } else if k.kind == kinds::NODE_MAINTENANCE {
        inner.maintenance.remove(&k.name);
    } else if k.kind == kinds::CRON_RECORD {
        inner.cron_records.remove(&(k.namespace.clone(), k.name.clone()));
    } else if k.kind == kinds::JOB_END {
        inner.job_ends.remove(&(k.namespace.clone(), k.name.clone()));
    }
    if inner.map.get(k).is_some_and(Entry::is_tombstone) {
        inner.tombstones = inner.tombstones.saturating_sub(1);
    }
}

fn install(inner: &mut Inner, e: Entry) {
    unview(inner, &e.key);
    match decode(&e) {
        Ok(Some(Decoded::Object(o))) => {
            inner.objects.insert(o.object.key(), o);
        }
        Ok(Some(Decoded::PodResult(r))) => {
            inner.pod_results.insert((e.key.namespace.clone(), e.key.name.clone()), r);
        }
        Ok(Some(Decoded::Revision(r))) => {
            inner.revisions.insert((e.key.namespace.clone(), e.key.name.clone()), r);
        }
        Ok(Some(Decoded::Maintenance(m))) => {
            inner.maintenance.insert(e.key.name.clone(), m);
        }
        Ok(Some(Decoded::CronRecord(r))) => {
            inner.cron_records.insert((e.key.namespace.clone(), e.key.name.clone()), r);
        }
        Ok(Some(Decoded::JobEnd(r))) => {
            inner.job_ends.insert((e.key.namespace.clone(), e.key.name.clone()), r);
        }
        _ => {}
    }
    if e.is_tombstone() {
        inner.tombstones += 1;
    }
    let old = inner.map.get(&e.key);
    inner.digests.replace(old, Some(&e));
    inner.map.insert(e.key.clone(), e);
}

fn forget(inner: &mut Inner, k: &Key) {
    unview(inner, k);
    if let Some(old) = inner.map.remove(k) {
        inner.digests.replace(Some(&old), None);
    }
}

fn build_snapshot(inner: &Inner) -> Snapshot {
    Snapshot {
        rev: inner.rev,
        objects: inner.objects.clone(),
        pod_results: inner.pod_results.clone(),
        revisions: inner.revisions.clone(),
        maintenance: inner.maintenance.clone(),
        cron_records: inner.cron_records.clone(),
        job_ends: inner.job_ends.clone(),
        entries: inner.map.len(),
        tombstones: inner.tombstones,
    }
}

/// The store key of an object.
pub fn object_key(k: &ObjectKey) -> Key {
    Key::new(k.kind.as_str(), k.namespace.clone(), k.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, name: &str) -> StateDb {
        StateDb::open(&dir.join(format!("{name}.redb")), name, uhlc::system_time_clock, Duration::from_secs(60))
            .unwrap()
    }

    fn ns_value(name: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
            .unwrap()
    }

    #[test]
    fn local_write_is_decoded_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = open(dir.path(), "a");
            db.write(vec![(Key::new("Namespace", "", "prod"), Some(ns_value("prod")))]).unwrap();
            assert!(db.snapshot().namespace_exists("prod"));
        }
        let db = open(dir.path(), "a");
        assert!(db.snapshot().namespace_exists("prod"));
        // New stamps are above stored ones even after a restart.
        let stored = db.get(&Key::new("Namespace", "", "prod")).unwrap().stamp;
        assert!(db.now() > stored);
    }

    #[test]
    fn remote_garbage_is_refused_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), "a");
        let good = Entry {
            key: Key::new("Namespace", "", "x"),
            stamp: db.now(),
            origin: "b".into(),
            value: Some(ns_value("x")),
        };
        let bad_json =
            Entry { key: Key::new("Namespace", "", "y"), value: Some(b"{not json".to_vec()), ..good.clone() };
        let mismatched = Entry { key: Key::new("Namespace", "", "z"), ..good.clone() };
        let unknown = Entry { key: Key::new("Secret", "", "z"), ..good.clone() };
        let future =
            Entry { key: Key::new("Namespace", "", "x"), stamp: Stamp { time: u64::MAX / 2, node: 5 }, ..good.clone() };
        let out = db.merge_remote(vec![good, bad_json, mismatched, unknown, future]).unwrap();
        assert_eq!(out.applied.len(), 1);
        assert_eq!(out.refused.len(), 4);
        assert!(matches!(out.refused[3].1, Refusal::FutureStamp(_)));
        assert_eq!(db.counters.remote_refused.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn collected_tombstones_block_stale_resurrection() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), "a");
        let key = Key::new("Namespace", "", "x");
        let old = Entry { key: key.clone(), stamp: db.now(), origin: "b".into(), value: Some(ns_value("x")) };
        db.write(vec![(key.clone(), None)]).unwrap();
        assert_eq!(db.collect_tombstones(db.now().time).unwrap(), 1);
        let out = db.merge_remote(vec![old]).unwrap();
        assert_eq!(out.refused[0].1, Refusal::BeyondHorizon);
        assert!(!db.snapshot().namespace_exists("x"));
    }
}
