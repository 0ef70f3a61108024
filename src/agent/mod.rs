//! The agent (Shoal's kubelet): runs the pods this node owns.
//!
//! - `core`: every decision, as a state machine without I/O (the pod table,
//!   restarts, probes, Job accounting, handoffs, what to report);
//! - `driver`: the task that feeds the core and carries out its effects
//!   through an `Executor`;
//! - `exec`: the real executor (pod files, ports, environment, container
//!   tasks, probe checks);
//! - `runtime` (trait), `process` and `docker`: how containers run;
//! - `attach`: interactive commands in running containers (exec);
//! - `logs`, `ports`: log files and host ports;
//! - `cron`: the CronJob trigger (what `placement::cron` decides, written
//!   to the desired state), and in the same loop `job_timers`, the Jobs'
//!   deadlines and TTLs (`placement::jobs`).
//!
//! netsim drives the same `core` and `driver` with a simulated executor.

pub mod attach;
pub mod core;
pub mod cron;
pub mod docker;
pub mod driver;
pub mod exec;
mod job_timers;
pub mod lease;
pub mod logs;
pub mod ports;
pub mod process;
pub mod runtime;
