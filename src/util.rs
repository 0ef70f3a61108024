//! Small helpers every layer may use: random ids, private files, the system
//! clock. Owns nothing else; no Shoal type appears here.
//!
//! The clock functions here are the only place the library reads the system
//! clock for unix time; pure modules take time as an argument instead.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// A random hex string of `bytes` bytes.
pub fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

/// A random RFC 4122 version-4 UUID.
pub fn new_uid() -> String {
    uuid_of(rand::random(), 4)
}

/// `bytes` as an RFC 4122 UUID of `version` (4: random, 5: derived from a name).
pub fn uuid_of(mut b: [u8; 16], version: u8) -> String {
    b[6] = (b[6] & 0x0f) | (version << 4);
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Writes `content` to `path` with mode 0600, atomically (write, fsync, rename).
pub fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    // The rename itself survives a power cut only once its directory is synced.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Reads a private file, or creates it (mode 0600) with `make()`; trimmed.
pub fn secret_file(path: &Path, make: impl FnOnce() -> String) -> std::io::Result<String> {
    if let Ok(s) = std::fs::read_to_string(path) {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        return Ok(s.trim().to_string());
    }
    let value = make();
    write_private(path, &format!("{value}\n"))?;
    Ok(value)
}

/// Milliseconds added to the system clock: the cluster's time, as this
/// node's peers see it (`membership::clock`), when this host's clock is
/// off. Zero in a process that runs no node (the CLI).
static CLOCK_OFFSET_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Sets the correction the system clock gets (see `CLOCK_OFFSET_MS`).
pub fn set_clock_offset_ms(ms: i64) {
    CLOCK_OFFSET_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
}

/// The correction the system clock gets, in milliseconds.
pub fn clock_offset_ms() -> i64 {
    CLOCK_OFFSET_MS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Time since the unix epoch, from the system clock corrected to the
/// cluster's time.
fn since_epoch() -> std::time::Duration {
    let raw = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let off = clock_offset_ms();
    if off >= 0 {
        raw + std::time::Duration::from_millis(off as u64)
    } else {
        raw.saturating_sub(std::time::Duration::from_millis(off.unsigned_abs()))
    }
}

/// Unix seconds now (the cluster's time).
pub fn unix_secs() -> u64 {
    since_epoch().as_secs()
}

/// Unix milliseconds now (the cluster's time).
pub fn unix_millis() -> u64 {
    since_epoch().as_millis() as u64
}

/// The hybrid logical clock's physical time (the cluster's time).
pub fn ntp64_now() -> uhlc::NTP64 {
    uhlc::NTP64::from(since_epoch())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_v4() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, new_uid());
    }

    #[test]
    fn private_files_are_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        let a = secret_file(&p, || "one".into()).unwrap();
        let b = secret_file(&p, || "two".into()).unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("one", "one"));
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
