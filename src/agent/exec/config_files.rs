//! The files of a `configMap` volume on disk: written at prepare, and
//! rewritten in place when the ConfigMap changes (`sync`), each file
//! replaced by a rename so that a reader sees the old contents or the new,
//! never half of each. A key removed from the ConfigMap removes its file.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Lists the files this module wrote in a volume (so that a removed key
/// removes only what it wrote).
const MANIFEST: &str = ".shoal-files";

/// Makes `dir` hold exactly `files` (relative path → contents) with `mode`;
/// returns whether anything changed.
pub fn write(dir: &Path, files: &BTreeMap<String, Vec<u8>>, mode: u32) -> std::io::Result<bool> {
    std::fs::create_dir_all(dir)?;
    let before: BTreeSet<String> =
        std::fs::read_to_string(dir.join(MANIFEST)).map(|s| s.lines().map(String::from).collect()).unwrap_or_default();
    let mut changed = false;
    for (rel, data) in files {
        let path = dir.join(rel);
        if std::fs::read(&path).is_ok_and(|old| old == *data) {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = path.with_file_name(format!(
            ".{}.tmp",
            path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
        ));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(data)?;
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        std::fs::rename(&tmp, &path)?;
        changed = true;
    }
    for gone in before.iter().filter(|p| !files.contains_key(*p)) {
        if std::fs::remove_file(dir.join(gone)).is_ok() {
            changed = true;
        }
    }
    let listed: Vec<&str> = files.keys().map(String::as_str).collect();
    if before.iter().map(String::as_str).ne(listed.iter().copied()) {
        std::fs::write(dir.join(MANIFEST), listed.join("\n"))?;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_changed_files_and_removes_gone_keys() {
        let dir = tempfile::tempdir().unwrap();
        let v = dir.path().join("cfg");
        let mut files = BTreeMap::from([("a".to_string(), b"1".to_vec()), ("sub/b".to_string(), b"2".to_vec())]);
        assert!(write(&v, &files, 0o644).unwrap());
        assert_eq!(std::fs::read(v.join("sub/b")).unwrap(), b"2");
        assert_eq!(std::fs::metadata(v.join("a")).unwrap().permissions().mode() & 0o777, 0o644);
        assert!(!write(&v, &files, 0o644).unwrap(), "nothing changed");
        files.insert("a".into(), b"one".to_vec());
        files.remove("sub/b");
        std::fs::write(v.join("mine.txt"), "the pod's own file").unwrap();
        assert!(write(&v, &files, 0o644).unwrap());
        assert_eq!(std::fs::read(v.join("a")).unwrap(), b"one");
        assert!(!v.join("sub/b").exists(), "a removed key removes its file");
        assert!(v.join("mine.txt").exists(), "files it did not write stay");
    }
}
