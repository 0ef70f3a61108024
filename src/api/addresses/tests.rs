use std::sync::Arc;

use super::*;
use crate::model::parse::{SourceFile, parse_files};
use crate::model::validate::Context;
use crate::state::StateDb;
use crate::state::apply::{Mode, plan_apply};

fn lb(name: &str, ip: Option<&str>) -> String {
    let ip = ip.map(|i| format!("  loadBalancerIP: {i}\n")).unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  type: LoadBalancer\n{ip}  selector: {{app: web}}\n  ports: [{{port: 80}}]\n"
    )
}

fn parse(yaml: &str) -> Vec<Parsed> {
    let out = parse_files(&[SourceFile { name: "svc.yaml".into(), content: yaml.into() }], &Context::default(), None);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    out.objects
}

/// A clock that moves a second each time it is read, so that every
/// object is created later than the one before.
fn clock() -> uhlc::NTP64 {
    static NOW: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1_700_000_000);
    uhlc::NTP64(NOW.fetch_add(1, std::sync::atomic::Ordering::Relaxed) << 32)
}

struct Cluster {
    db: StateDb,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster { db: StateDb::in_memory("a", clock, std::time::Duration::from_secs(60)).unwrap() }
    }
    /// Applies `yaml` as the API does; returns the assigned address.
    fn apply(&self, yaml: &str, pool: &Pool) -> Result<Option<String>, ApiError> {
        let snap = self.db.snapshot();
        let mut objects = parse(yaml);
        assign(&snap, &mut objects, pool)?;
        let ip = match &objects[0].object {
            Object::Service(s) => s.spec.load_balancer_ip.clone(),
            _ => None,
        };
        let (_, changes) = plan_apply(&snap, objects, self.db.now(), Mode::Apply).unwrap();
        self.db.write(changes).unwrap();
        Ok(ip)
    }
    fn snap(&self) -> Arc<Snapshot> {
        self.db.snapshot()
    }
}

fn pool(s: &[&str]) -> Pool {
    Pool::parse(s).unwrap()
}

#[test]
fn addresses_come_from_the_pool_and_stay_on_reapply() {
    let c = Cluster::new();
    let p = pool(&["10.0.0.240-241"]);
    assert_eq!(c.apply(&lb("a", None), &p).unwrap().as_deref(), Some("10.0.0.240"));
    assert_eq!(c.apply(&lb("b", None), &p).unwrap().as_deref(), Some("10.0.0.241"));
    assert_eq!(c.apply(&lb("a", None), &p).unwrap().as_deref(), Some("10.0.0.240"), "kept on re-apply");
    let e = c.apply(&lb("c", None), &p).unwrap_err();
    assert!(e.to_string().contains("no free address left in the pools (10.0.0.240-10.0.0.241)"), "{e}");
}

#[test]
fn a_given_address_must_be_free_and_in_a_pool() {
    let c = Cluster::new();
    let p = pool(&["10.0.0.240-249"]);
    assert_eq!(c.apply(&lb("a", Some("10.0.0.245")), &p).unwrap().as_deref(), Some("10.0.0.245"));
    let e = c.apply(&lb("b", Some("10.0.0.245")), &p).unwrap_err().to_string();
    assert!(e.contains("spec.loadBalancerIP: 10.0.0.245 is already the address of service default/a"), "{e}");
    let e = c.apply(&lb("b", Some("192.168.9.9")), &p).unwrap_err().to_string();
    assert!(e.contains("192.168.9.9 is in no node's load_balancer.pool (pools: 10.0.0.240-10.0.0.249)"), "{e}");
    assert_eq!(c.apply(&lb("b", None), &p).unwrap().as_deref(), Some("10.0.0.240"), "assigned around the given one");
}

#[test]
fn without_a_pool_the_service_waits_and_says_why() {
    let c = Cluster::new();
    assert_eq!(c.apply(&lb("a", None), &Pool::default()).unwrap(), None);
    let snap = c.snap();
    let o = snap.of_kind(Kind::Service).next().unwrap();
    let mut v = o.object.to_json();
    decorate(&mut v, &snap, &PlanView::default(), &ClusterView::default(), None);
    assert_eq!(v["status"]["conditions"][0]["reason"], "NoAddress");
    assert!(v["status"]["loadBalancer"]["ingress"].is_null());
}

#[test]
fn the_older_service_keeps_an_address_given_twice() {
    // Two nodes assigned one address at once: both writes land.
    let c = Cluster::new();
    let p = pool(&["10.0.0.240"]);
    // "old" sorts after "new" by name: only its age can make it win.
    c.apply(&lb("old", None), &p).unwrap();
    let snap = c.snap();
    let mut objects = parse(&lb("new", Some("10.0.0.240")));
    let (_, changes) = plan_apply(&snap, std::mem::take(&mut objects), c.db.now(), Mode::Apply).unwrap();
    c.db.write(changes).unwrap();
    let snap = c.snap();
    assert_eq!(
        addresses::addresses(&snap).get(&"10.0.0.240".parse().unwrap()).map(String::as_str),
        Some("default/old")
    );
    let new = snap.of_kind(Kind::Service).find(|o| o.object.key().name == "new").unwrap();
    let mut v = new.object.to_json();
    decorate(&mut v, &snap, &PlanView::default(), &ClusterView::default(), None);
    assert_eq!(v["status"]["conditions"][0]["reason"], "AddressConflict", "{v}");
}
