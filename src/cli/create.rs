//! `shoal create`: objects made from the command line.
//!
//! `create job NAME --from=cronjob/NAME` runs a CronJob's template now, as
//! kubectl does: the Job names the CronJob as its owner (so the CronJob's
//! `concurrencyPolicy` and history count it) and carries the
//! `cronjob.kubernetes.io/instantiate: manual` annotation.
//!
//! `create configmap NAME --from-literal=K=V --from-file=[K=]PATH` makes a
//! ConfigMap as kubectl does: text files under `data`, other files (not
//! UTF-8) under `binaryData`, a directory as one key per regular file.
//!
//! `create secret generic NAME --from-literal=K=V --from-file=[K=]PATH`
//! makes a Secret the same way, every value base64 under `data`; the node
//! that receives it seals it.

use std::collections::BTreeMap;

use base64::Engine as _;

use hyper::Method;

use super::CliError;
use super::args::{CreateArgs, CreateWhat, SecretWhat};
use super::commands::client;
use crate::model::{CronJob, Kind};

pub async fn run(a: CreateArgs) -> Result<(), CliError> {
    match a.what {
        CreateWhat::Job { name, from, namespace, client: opts } => {
            let Some((kind, cj_name)) = from.split_once('/') else {
                return Err(CliError::Usage(format!("--from={from:?}: expected cronjob/NAME")));
            };
            if Kind::from_cli(kind) != Some(Kind::CronJob) {
                return Err(CliError::Usage(format!(
                    "--from={from:?}: a Job can be made from a CronJob only (cronjob/NAME)"
                )));
            }
            let c = client(&opts);
            let v = c.get_json(&format!("{}/{cj_name}", Kind::CronJob.rest_path(Some(&namespace)))).await?;
            let cj: CronJob = serde_json::from_value(v)
                .map_err(|e| CliError::Failed(format!("the server sent a CronJob this client cannot read: {e}")))?;
            let name = name.unwrap_or_else(|| {
                let suffix: u32 = rand::random::<u32>() % 0x100_0000;
                format!("{cj_name}-manual-{suffix:06x}")
            });
            let job = crate::model::cron::manual_job(&cj, &name);
            let body = serde_json::to_value(&job).unwrap_or_default();
            c.send_json(Method::POST, &Kind::Job.rest_path(Some(&namespace)), &body).await?;
            println!("job.batch/{name} created");
            Ok(())
        }
        CreateWhat::ConfigMap { name, from_literal, from_file, namespace, client: opts } => {
            let mut cm =
                crate::model::ConfigMap { api_version: "v1".into(), kind: "ConfigMap".into(), ..Default::default() };
            cm.metadata.name = name.clone();
            cm.metadata.namespace = Some(namespace.clone());
            for lit in &from_literal {
                let Some((k, v)) = lit.split_once('=') else {
                    return Err(CliError::Usage(format!("--from-literal={lit:?}: expected KEY=VALUE")));
                };
                add(&mut cm, k, v.as_bytes().to_vec(), &format!("--from-literal={lit}"))?;
            }
            for f in &from_file {
                for (k, bytes) in read_source(f)? {
                    add(&mut cm, &k, bytes, &format!("--from-file={f}"))?;
                }
            }
            let problems = crate::model::config::check(&cm);
            if let Some((field, m)) = problems.first() {
                return Err(CliError::Usage(format!("{field}: {m}")));
            }
            let body = serde_json::to_value(&cm).unwrap_or_default();
            client(&opts).send_json(Method::POST, &Kind::ConfigMap.rest_path(Some(&namespace)), &body).await?;
            println!("configmap/{name} created");
            Ok(())
        }
        CreateWhat::Secret {
            what: SecretWhat::Generic { name, from_literal, from_file, type_, namespace, client: opts },
        } => {
            let mut sec = crate::model::Secret {
                api_version: "v1".into(),
                kind: "Secret".into(),
                type_: Some(type_.unwrap_or_else(|| "Opaque".into())),
                ..Default::default()
            };
            sec.metadata.name = name.clone();
            sec.metadata.namespace = Some(namespace.clone());
            let b64 = base64::engine::general_purpose::STANDARD;
            let mut put = |k: &str, bytes: Vec<u8>, from: &str| {
                if let Err(m) = crate::model::config::valid_key(k) {
                    return Err(CliError::Usage(format!("{from}: {m}")));
                }
                if sec.data.insert(k.to_string(), b64.encode(bytes)).is_some() {
                    return Err(CliError::Usage(format!("{from}: key {k:?} is given twice")));
                }
                Ok(())
            };
            for lit in &from_literal {
                let Some((k, v)) = lit.split_once('=') else {
                    // Never echo a literal: it may be the secret itself.
                    return Err(CliError::Usage("--from-literal: expected KEY=VALUE".into()));
                };
                put(k, v.as_bytes().to_vec(), &format!("--from-literal={k}=..."))?;
            }
            for f in &from_file {
                for (k, bytes) in read_source(f)? {
                    put(&k, bytes, &format!("--from-file={f}"))?;
                }
            }
            if let Some((field, m)) = crate::model::config::check_secret(&sec).first() {
                return Err(CliError::Usage(format!("{field}: {m}")));
            }
            let body = serde_json::to_value(&sec).unwrap_or_default();
            client(&opts).send_json(Method::POST, &Kind::Secret.rest_path(Some(&namespace)), &body).await?;
            println!("secret/{name} created");
            Ok(())
        }
    }
}

/// Adds key `k`: text under `data`, other bytes (base64) under `binaryData`.
fn add(cm: &mut crate::model::ConfigMap, k: &str, bytes: Vec<u8>, from: &str) -> Result<(), CliError> {
    if let Err(m) = crate::model::config::valid_key(k) {
        return Err(CliError::Usage(format!("{from}: {m}")));
    }
    if cm.data.contains_key(k) || cm.binary_data.contains_key(k) {
        return Err(CliError::Usage(format!("{from}: key {k:?} is given twice")));
    }
    match String::from_utf8(bytes) {
        Ok(s) => {
            cm.data.insert(k.to_string(), s);
        }
        Err(e) => {
            cm.binary_data.insert(k.to_string(), base64::engine::general_purpose::STANDARD.encode(e.into_bytes()));
        }
    }
    Ok(())
}

/// The keys of one `--from-file`: `PATH`, `KEY=PATH`, or a directory.
fn read_source(spec: &str) -> Result<BTreeMap<String, Vec<u8>>, CliError> {
    let (key, path) = match spec.split_once('=') {
        Some((k, p)) => (Some(k.to_string()), std::path::PathBuf::from(p)),
        None => (None, std::path::PathBuf::from(spec)),
    };
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| CliError::Usage(format!("--from-file={spec}: cannot read {}: {e}", p.display())))
    };
    let mut out = BTreeMap::new();
    if path.is_dir() {
        if key.is_some() {
            return Err(CliError::Usage(format!("--from-file={spec}: a directory takes no KEY=")));
        }
        let entries = std::fs::read_dir(&path)
            .map_err(|e| CliError::Usage(format!("--from-file={spec}: cannot read {}: {e}", path.display())))?;
        for e in entries.flatten() {
            let p = e.path();
            if p.is_file() {
                out.insert(e.file_name().to_string_lossy().into_owned(), read(&p)?);
            }
        }
        return Ok(out);
    }
    let k = key.unwrap_or_else(|| path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    out.insert(k, read(&path)?);
    Ok(out)
}
