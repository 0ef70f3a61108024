//! `shoal create`: objects made from the command line.
//!
//! `create job NAME --from=cronjob/NAME` runs a CronJob's template now, as
//! kubectl does: the Job names the CronJob as its owner (so the CronJob's
//! `concurrencyPolicy` and history count it) and carries the
//! `cronjob.kubernetes.io/instantiate: manual` annotation.

use hyper::Method;

use super::CliError;
use super::args::{CreateArgs, CreateWhat};
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
    }
}
