use super::*;
use crate::model::types::{
    ConfigMapVolumeSource, EnvFromSource, EnvVar, EnvVarSource, KeySelector, KeyToPath, NameRef, SecretVolumeSource,
};

fn cm(data: &[(&str, &str)]) -> ConfigMap {
    let mut c = ConfigMap::default();
    c.metadata.name = "app".into();
    c.data = data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    c
}

type TestLookup = Box<dyn Fn(Source, &str, &str) -> Result<Option<Arc<Values>>, ConfigError>>;

fn lookup_of(cms: Vec<ConfigMap>) -> TestLookup {
    with_secrets(cms, Vec::new())
}

/// ConfigMaps and Secrets (name → data) of namespace default.
fn with_secrets(cms: Vec<ConfigMap>, secrets: Vec<(&'static str, BTreeMap<String, Vec<u8>>)>) -> TestLookup {
    Box::new(move |source, ns: &str, name: &str| {
        if ns != "default" {
            return Ok(None);
        }
        Ok(match source {
            Source::ConfigMap => {
                cms.iter().find(|c| c.metadata.name == name).map(|c| Arc::new(Values::of_config_map(c)))
            }
            Source::Secret => {
                secrets.iter().find(|(n, _)| *n == name).map(|(_, d)| Arc::new(Values::of_secret(d.clone())))
            }
        })
    })
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
    let mut cv = ConfigMapVolumeSource { name: "app".into(), ..Default::default() };
    let vol =
        |cv: &ConfigMapVolumeSource| Volume { name: "v".into(), config_map: Some(cv.clone()), ..Default::default() };
    let files = volume_files("default", &volume_ref(&vol(&cv)).unwrap(), &lookup).unwrap();
    assert_eq!(files.keys().collect::<Vec<_>>(), ["a.conf", "b.conf", "logo.bin"]);
    assert_eq!(files["logo.bin"], [0u8, 159, 146, 150]);
    cv.items = vec![KeyToPath { key: "b.conf".into(), path: "conf/b".into() }];
    let files = volume_files("default", &volume_ref(&vol(&cv)).unwrap(), &lookup).unwrap();
    assert_eq!(files, BTreeMap::from([("conf/b".to_string(), b"y=2\n".to_vec())]));
    cv.items.push(KeyToPath { key: "c.conf".into(), path: "c".into() });
    assert!(volume_files("default", &volume_ref(&vol(&cv)).unwrap(), &lookup).unwrap_err().0.contains("\"c.conf\""));
    let gone = ConfigMapVolumeSource { name: "gone".into(), optional: Some(true), ..Default::default() };
    assert!(
        volume_files("default", &volume_ref(&vol(&gone)).unwrap(), &lookup).unwrap().is_empty(),
        "optional and missing: empty"
    );
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

fn secret_data() -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([("password".to_string(), b"s3cr3t-value".to_vec()), ("user".to_string(), b"admin".to_vec())])
}

#[test]
fn secrets_give_env_and_files_and_errors_never_hold_a_value() {
    let lookup = with_secrets(Vec::new(), vec![("db", secret_data())]);
    let mut c = Container::default();
    c.env_from.push(EnvFromSource {
        prefix: Some("DB_".into()),
        config_map_ref: None,
        secret_ref: Some(NameRef { name: "db".into(), optional: None }),
    });
    let sel = |name: &str, key: &str| EnvVar {
        name: "PW".into(),
        value: String::new(),
        value_from: Some(EnvVarSource {
            config_map_key_ref: None,
            secret_key_ref: Some(KeySelector { name: name.into(), key: key.into(), optional: None }),
        }),
    };
    c.env.push(sel("db", "password"));
    let env = container_env("default", &c, &lookup).unwrap();
    let got: Vec<(&str, &str)> = env.iter().map(|e| (e.name.as_str(), e.value.as_str())).collect();
    assert_eq!(got, [("DB_password", "s3cr3t-value"), ("DB_user", "admin"), ("PW", "s3cr3t-value")]);
    assert!(!format!("{env:?}").contains("s3cr3t"), "Debug hides values from Secrets");
    c.env[0] = sel("db", "nope");
    let e = container_env("default", &c, &lookup).unwrap_err().0;
    assert_eq!(e, "couldn't find key \"nope\" in Secret default/db");
    c.env_from.clear();
    c.env[0] = sel("gone", "password");
    assert_eq!(
        container_env("default", &c, &lookup).unwrap_err().0,
        "secret \"gone\" not found in namespace \"default\""
    );
    let sv = SecretVolumeSource {
        secret_name: "db".into(),
        items: vec![KeyToPath { key: "password".into(), path: "pw".into() }],
        default_mode: Some(0o400),
        ..Default::default()
    };
    let vol = Volume { name: "creds".into(), secret: Some(sv), ..Default::default() };
    let r = volume_ref(&vol).unwrap();
    assert_eq!((r.source, r.mode), (Source::Secret, 0o400));
    assert_eq!(
        volume_files("default", &r, &lookup).unwrap(),
        BTreeMap::from([("pw".to_string(), b"s3cr3t-value".to_vec())])
    );
    let spec = PodSpec { containers: vec![c], volumes: vec![vol], ..Default::default() };
    assert_eq!(
        references(&spec).into_iter().collect::<Vec<_>>(),
        [(Source::Secret, "db".to_string()), (Source::Secret, "gone".to_string())]
    );
}

#[test]
fn a_secret_that_cannot_be_opened_here_is_an_error_not_a_missing_object() {
    let lookup = |_: Source, _: &str, _: &str| -> Result<Option<Arc<Values>>, ConfigError> {
        Err(ConfigError("secret default/db cannot be read on this node yet".into()))
    };
    let mut c = Container::default();
    c.env_from.push(EnvFromSource {
        prefix: None,
        config_map_ref: None,
        secret_ref: Some(NameRef { name: "db".into(), optional: Some(true) }),
    });
    assert!(
        container_env("default", &c, &lookup).unwrap_err().0.contains("cannot be read"),
        "optional does not hide it"
    );
}

#[test]
fn secret_input_is_checked_by_field_without_quoting_values() {
    let mut s = Secret::default();
    s.data.insert("good".into(), "aGk=".into());
    s.data.insert("bad64".into(), "hunter2!".into());
    s.string_data.insert("a/b".into(), "hunter2".into());
    let errs = check_secret(&s);
    let fields: Vec<&str> = errs.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["data.bad64", "stringData.a/b"], "{errs:?}");
    assert!(errs.iter().all(|(_, m)| !m.contains("hunter2")), "{errs:?}");
    s.data.remove("bad64");
    s.string_data = BTreeMap::from([("good".to_string(), "text wins".to_string())]);
    assert_eq!(secret_bytes(&s).unwrap(), BTreeMap::from([("good".to_string(), b"text wins".to_vec())]));
    s.sealed = Some(crate::model::types::Sealed::default());
    assert!(check_secret(&s).iter().any(|(f, _)| f == "sealed"));
}
