use super::*;
use crate::model::types::{EnvFromSource, EnvVar, EnvVarSource, KeySelector, KeyToPath, NameRef};

fn cm(data: &[(&str, &str)]) -> ConfigMap {
    let mut c = ConfigMap::default();
    c.metadata.name = "app".into();
    c.data = data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    c
}

fn lookup_of(cms: Vec<ConfigMap>) -> impl Fn(&str, &str) -> Option<Arc<ConfigMap>> {
    move |ns: &str, name: &str| {
        (ns == "default").then(|| cms.iter().find(|c| c.metadata.name == name).cloned()).flatten().map(Arc::new)
    }
}

fn key_ref(name: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: "V".into(),
        value: String::new(),
        value_from: Some(EnvVarSource {
            config_map_key_ref: Some(KeySelector {
                name: name.into(),
                key: key.into(),
                optional: optional.then_some(true),
            }),
            secret_key_ref: None,
        }),
    }
}

#[test]
fn env_comes_from_env_from_then_env_and_names_what_is_missing() {
    let lookup = lookup_of(vec![cm(&[("MODE", "fast"), ("LEVEL", "3")])]);
    let mut c = Container::default();
    c.env_from.push(EnvFromSource {
        prefix: Some("APP_".into()),
        config_map_ref: Some(NameRef { name: "app".into(), optional: None }),
        secret_ref: None,
    });
    c.env.push(EnvVar { name: "APP_MODE".into(), value: "$(HOME)".into(), value_from: None });
    c.env.push(key_ref("app", "LEVEL", false));
    let env = container_env("default", &c, &lookup).unwrap();
    let got: Vec<(&str, &str, bool)> = env.iter().map(|e| (e.name.as_str(), e.value.as_str(), e.literal)).collect();
    assert_eq!(
        got,
        [("APP_LEVEL", "3", false), ("APP_MODE", "fast", false), ("APP_MODE", "$(HOME)", true), ("V", "3", false)],
        "envFrom first, then env in order; the later one wins when applied"
    );
    // A missing key, a missing ConfigMap, another namespace: errors naming them.
    let mut c2 = Container::default();
    c2.env.push(key_ref("app", "NOPE", false));
    assert_eq!(
        container_env("default", &c2, &lookup).unwrap_err().0,
        "couldn't find key \"NOPE\" in ConfigMap default/app"
    );
    c2.env[0] = key_ref("other", "K", false);
    assert_eq!(
        container_env("default", &c2, &lookup).unwrap_err().0,
        "configmap \"other\" not found in namespace \"default\""
    );
    assert!(container_env("prod", &c, &lookup).unwrap_err().0.contains("namespace \"prod\""));
    // Optional ones are skipped.
    c2.env[0] = key_ref("other", "K", true);
    assert_eq!(container_env("default", &c2, &lookup).unwrap(), []);
    c2.env[0] = key_ref("app", "NOPE", true);
    assert_eq!(container_env("default", &c2, &lookup).unwrap(), []);
}

#[test]
fn a_volume_holds_every_key_or_the_items_asked_for() {
    let mut c = cm(&[("a.conf", "x=1\n"), ("b.conf", "y=2\n")]);
    c.binary_data.insert("logo.bin".into(), base64::engine::general_purpose::STANDARD.encode([0u8, 159, 146, 150]));
    let lookup = lookup_of(vec![c]);
    let mut v = ConfigMapVolumeSource { name: "app".into(), ..Default::default() };
    let files = volume_files("default", &v, &lookup).unwrap();
    assert_eq!(files.keys().collect::<Vec<_>>(), ["a.conf", "b.conf", "logo.bin"]);
    assert_eq!(files["logo.bin"], [0u8, 159, 146, 150]);
    v.items = vec![KeyToPath { key: "b.conf".into(), path: "conf/b".into() }];
    let files = volume_files("default", &v, &lookup).unwrap();
    assert_eq!(files, BTreeMap::from([("conf/b".to_string(), b"y=2\n".to_vec())]));
    v.items.push(KeyToPath { key: "c.conf".into(), path: "c".into() });
    assert!(volume_files("default", &v, &lookup).unwrap_err().0.contains("\"c.conf\""));
    let gone = ConfigMapVolumeSource { name: "gone".into(), optional: Some(true), ..Default::default() };
    assert!(volume_files("default", &gone, &lookup).unwrap().is_empty(), "optional and missing: empty");
}

#[test]
fn bad_keys_and_data_are_named_by_field() {
    let mut c = cm(&[("ok.key", "v"), ("a/b", "v")]);
    c.binary_data.insert("ok.key".into(), "AAAA".into());
    c.binary_data.insert("bin".into(), "not base64!".into());
    let errs = check(&c);
    let fields: Vec<&str> = errs.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["data.a/b", "binaryData.bin", "binaryData.ok.key"], "{errs:?}");
    assert!(errs[0].1.contains("'/'"), "{}", errs[0].1);
    let big = cm(&[("k", &"x".repeat(MAX_CONFIG_BYTES))]);
    assert!(check(&big).iter().any(|(f, m)| f == "data" && m.contains("1 MiB")));
    assert!(valid_item_path("../x").is_err() && valid_item_path("/x").is_err() && valid_item_path("a/b").is_ok());
}
