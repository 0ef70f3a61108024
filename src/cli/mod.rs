//! The `shoal` command line: `up` runs a node; the other verbs are a
//! kubectl-like client of any node's API.
//!
//! - `args`: the clap definitions (flags, env vars);
//! - `commands`: what each verb does; `rollout`: following rollouts;
//!   `kubeconfig`: a kubeconfig for kubectl;
//!   `describe`, `output`: how it prints.
//!
//! Exit codes (documented in the README): 0 success, 1 the request failed
//! (invalid input, not found, conflict...), 2 bad usage, 3 no node reachable,
//! 4 authentication failed, 5 the node failed to start.

pub mod args;
pub mod commands;
pub mod create;
pub mod describe;
pub mod exec;
pub mod kubeconfig;
pub mod nodes;
pub mod output;
pub mod rollout;

use std::process::ExitCode;

use crate::api::client::ClientError;

/// A CLI failure with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Start(String),
    /// A command run with `shoal exec` ended with this code.
    #[error("command terminated with exit code {0}")]
    Exited(u8),
}

impl CliError {
    pub fn code(&self) -> u8 {
        match self {
            CliError::Failed(_) => 1,
            CliError::Usage(_) => 2,
            CliError::Unreachable(_) => 3,
            CliError::Unauthorized(_) => 4,
            CliError::Start(_) => 5,
            CliError::Exited(c) => *c,
        }
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> CliError {
        match e {
            ClientError::Unreachable { .. } => CliError::Unreachable(format!(
                "{e}\nIs a node running? Start one with `shoal up`, or point at one with --server / SHOAL_SERVER."
            )),
            ClientError::Api { code, status } => {
                let mut msg = status.message.clone();
                for c in &status.details.causes {
                    let line = c.to_issue().to_string();
                    if !msg.contains(&line) {
                        msg.push_str(&format!("\n  {line}"));
                    }
                }
                if code.as_u16() == 401 {
                    CliError::Unauthorized(msg)
                } else {
                    CliError::Failed(format!("({}) {msg}", status.reason))
                }
            }
            // No CA to verify the server with, or a URL that is none: usage.
            e @ (ClientError::NoCa(_) | ClientError::BadUrl(_)) => CliError::Usage(e.to_string()),
            other => CliError::Failed(other.to_string()),
        }
    }
}

/// Parses arguments, runs, prints errors, returns the exit code.
pub fn main() -> ExitCode {
    use clap::Parser;
    let cli = match args::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    if !matches!(cli.command, args::Command::Up(_) | args::Command::LeaseWatchdog(_)) {
        // A client verb piped into `head` or `grep -q` ends quietly when the
        // reader goes away, like every Unix tool, instead of panicking on a
        // broken pipe. (The node itself keeps ignoring SIGPIPE.)
        // SAFETY: restoring the default action of a signal before any thread
        // is started has no other effect on this process.
        let _ = unsafe {
            nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl)
        };
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(5);
        }
    };
    match rt.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.code())
        }
    }
}
