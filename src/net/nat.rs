//! Loads a node's nftables table (`proxy::nat` writes it) with `nft -f -`
//! (Debian's `nftables`). Needs `CAP_NET_ADMIN`; without it, or without
//! `nft`, the caller keeps every connection in the proxy.
//!
//! I/O only.

use std::io::Write;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum NatError {
    #[error("cannot run `nft` (install nftables, or set proxy.kernel_local = false): {0}")]
    NoNft(std::io::Error),
    #[error("`nft -f -` refused the table (it needs CAP_NET_ADMIN): {0}")]
    Failed(String),
}

/// Runs the nftables script `script` as one transaction.
pub fn load(script: &str) -> Result<(), NatError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NatError::NoNft)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(NatError::NoNft)?;
    }
    let out = child.wait_with_output().map_err(NatError::NoNft)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NatError::Failed(String::from_utf8_lossy(&out.stderr).trim().to_string()))
    }
}
