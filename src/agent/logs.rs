//! Container logs: captured to files under the data dir with a size cap and
//! rotation, read back (tail) and followed.
//!
//! One file per container, `<ns>_<pod>_<container>.log`, rotated to `.1`,
//! `.2`... when it exceeds `max_bytes`; at most `max_files` files are kept.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

/// Size and count limits for one container's logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    pub max_bytes: u64,
    pub max_files: u32,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits { max_bytes: 10 << 20, max_files: 2 }
    }
}

/// Path of a container's current log file.
pub fn log_path(dir: &Path, namespace: &str, pod: &str, container: &str) -> PathBuf {
    dir.join(format!("{namespace}_{pod}_{container}.log"))
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

struct LogFile {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    limits: LogLimits,
}

impl LogFile {
    fn write(&mut self, data: &[u8]) {
        if self.file.is_none() {
            self.reopen();
        }
        if self.size > 0 && self.size + data.len() as u64 > self.limits.max_bytes {
            self.rotate();
        }
        if let Some(f) = &mut self.file
            && f.write_all(data).is_ok()
        {
            self.size += data.len() as u64;
        }
    }

    fn reopen(&mut self) {
        match OpenOptions::new().create(true).append(true).open(&self.path) {
            Ok(f) => {
                self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
                self.file = Some(f);
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot open log file")
            }
        }
    }

    /// `max_files` counts the current file: rotated copies are `.1` up to
    /// `.(max_files - 1)`.
    fn rotate(&mut self) {
        self.file = None;
        let files = self.limits.max_files.max(1);
        if files == 1 {
            let _ = fs::remove_file(&self.path);
        } else {
            let _ = fs::remove_file(rotated(&self.path, files - 1));
            for n in (1..files - 1).rev() {
                let _ = fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1));
            }
            let _ = fs::rename(&self.path, rotated(&self.path, 1));
        }
        self.size = 0;
        self.reopen();
    }
}

/// A shared writer for one container's log; clones write to the same file.
#[derive(Clone)]
pub struct LogSink {
    inner: Arc<Mutex<LogFile>>,
}

impl std::fmt::Debug for LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogSink")
    }
}

impl LogSink {
    pub fn open(path: PathBuf, limits: LogLimits) -> LogSink {
        if let Some(dir) = path.parent() {
            let _ = fs::create_dir_all(dir);
        }
        let mut lf = LogFile { path, file: None, size: 0, limits };
        lf.reopen();
        LogSink { inner: Arc::new(Mutex::new(lf)) }
    }

    pub fn write(&self, data: &[u8]) {
        let mut lf = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        lf.write(data);
    }

    /// Copies everything from `r` into the log until EOF.
    pub async fn pump<R: tokio::io::AsyncRead + Unpin>(self, mut r: R) {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => self.write(&buf[..n]),
            }
        }
    }
}

/// The pod (namespace, name) a log file is of, from its name
/// (`<ns>_<pod>_<container>.log[.N]`: none of the three has a `_`).
pub fn pod_of_log(file: &str) -> Option<(&str, &str)> {
    let (base, _) = file.split_once(".log")?;
    let mut parts = base.splitn(3, '_');
    let (ns, pod, _container) = (parts.next()?, parts.next()?, parts.next()?);
    Some((ns, pod))
}

/// Removes the log files in `dir` of pods `keep` does not name; returns how
/// many it removed. The logs of a pod that stopped go with it, except a Job
/// pod's: they stay while the Job's result does (`kubectl logs` of a
/// finished Job), and this sweep removes them once the Job is deleted.
pub fn sweep(dir: &Path, keep: impl Fn(&str, &str) -> bool) -> usize {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some((ns, pod)) = pod_of_log(name)
            && !keep(ns, pod)
            && fs::remove_file(e.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// Removes a container's log files.
pub fn remove_logs(path: &Path, limits: LogLimits) {
    let _ = fs::remove_file(path);
    for n in 1..=limits.max_files + 1 {
        let _ = fs::remove_file(rotated(path, n));
    }
}

/// The last `tail` lines (all when `None`) of a container's logs, oldest
/// rotated file first.
pub fn read_tail(path: &Path, tail: Option<usize>, limits: LogLimits) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    for n in (1..limits.max_files.max(1)).rev() {
        if let Ok(mut f) = File::open(rotated(path, n)) {
            f.read_to_end(&mut data)?;
        }
    }
    File::open(path)?.read_to_end(&mut data)?;
    let Some(tail) = tail else { return Ok(data) };
    let mut newlines = 0;
    let mut start = 0;
    let end = if data.ends_with(b"\n") { data.len() - 1 } else { data.len() };
    for i in (0..end).rev() {
        if data[i] == b'\n' {
            newlines += 1;
            if newlines == tail {
                start = i + 1;
                break;
            }
        }
    }
    if tail == 0 {
        return Ok(Vec::new());
    }
    Ok(data[start..].to_vec())
}

/// Sends new bytes appended to `path` from `offset` on, until the receiver
/// is dropped. Survives rotation (the file shrinking or being replaced).
pub fn follow(path: PathBuf, mut offset: u64) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            if tx.is_closed() {
                return;
            }
            let path2 = path.clone();
            let res = tokio::task::spawn_blocking(move || -> std::io::Result<(Vec<u8>, u64)> {
                let mut f = File::open(&path2)?;
                let len = f.metadata()?.len();
                let from = if len < offset { 0 } else { offset };
                f.seek(SeekFrom::Start(from))?;
                let mut buf = Vec::new();
                f.take(1 << 20).read_to_end(&mut buf)?;
                Ok((buf, from))
            })
            .await;
            if let Ok(Ok((buf, from))) = res {
                offset = from + buf.len() as u64;
                if !buf.is_empty() && tx.send(buf).await.is_err() {
                    return;
                }
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_removes_the_logs_of_pods_nobody_names() {
        let dir = tempfile::tempdir().unwrap();
        let limits = LogLimits { max_bytes: 10, max_files: 2 };
        for (ns, pod) in [("default", "job-0"), ("default", "gone-1"), ("other", "job-0")] {
            let sink = LogSink::open(log_path(dir.path(), ns, pod, "c"), limits);
            sink.write(b"more than ten bytes, so it rotates\n");
            sink.write(b"and again\n");
        }
        fs::write(dir.path().join("unrelated.txt"), "x").unwrap();
        assert_eq!(pod_of_log("default_job-0_c.log.1"), Some(("default", "job-0")));
        let removed = sweep(dir.path(), |ns, pod| ns == "default" && pod == "job-0");
        assert_eq!(removed, 4, "both files of each of the 2 other pods");
        let mut left: Vec<String> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["default_job-0_c.log", "default_job-0_c.log.1", "unrelated.txt"]);
    }

    #[test]
    fn rotates_under_the_cap_and_tails_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let limits = LogLimits { max_bytes: 100, max_files: 2 };
        let path = log_path(dir.path(), "ns", "p-0", "c");
        let sink = LogSink::open(path.clone(), limits);
        for i in 0..100 {
            sink.write(format!("line {i:04}\n").as_bytes());
        }
        let total: u64 = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
        assert!(total <= 200, "total {total} exceeds the cap");
        let tail = String::from_utf8(read_tail(&path, Some(3), limits).unwrap()).unwrap();
        assert_eq!(tail, "line 0097\nline 0098\nline 0099\n");
        let all = String::from_utf8(read_tail(&path, None, limits).unwrap()).unwrap();
        assert!(all.ends_with("line 0099\n") && all.lines().count() > 10);
        remove_logs(&path, limits);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
