//! Name rules shared by objects, containers, ports and labels (Kubernetes').
//!
//! Each check returns `Err(Invalid)` with a reason in words a user can act on.

use super::Invalid;

/// Longest name of a workload (Deployment, DaemonSet, Job): a DNS subdomain,
/// as in Kubernetes. Its pods' names are cut to `MAX_POD_NAME` with a hash.
pub const MAX_OBJECT_NAME: usize = 253;
/// Longest pod name Shoal derives (a DNS label, so that it serves as a
/// hostname).
pub const MAX_POD_NAME: usize = 63;
/// How much of a long owner's name a derived pod name keeps.
const KEPT_OWNER: usize = 36;

/// RFC 1123 subdomain: dot-separated labels, at most `max` characters.
pub fn dns_subdomain(s: &str, max: usize) -> Result<(), Invalid> {
    if s.len() > max {
        return Err(Invalid(format!("must be at most {max} characters (has {})", s.len())));
    }
    if s.is_empty() {
        return Err(Invalid("must not be empty".into()));
    }
    if s.split('.').any(|l| dns_label(l, 63).is_err()) {
        return Err(Invalid(format!(
            "{s:?} is not a valid name: use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
        )));
    }
    Ok(())
}

/// The owner part of a derived pod name when `<owner>-<suffix>` would pass
/// `MAX_POD_NAME`: the first characters of the owner and 8 hex digits of a
/// hash of the whole name, so that two long owners with one prefix never
/// share pod names. Depends on the owner alone, so one owner's pods share it.
pub fn short_owner(owner: &str) -> String {
    let cut = owner.char_indices().nth(KEPT_OWNER).map_or(owner.len(), |(i, _)| i);
    let kept = owner[..cut].trim_end_matches(['-', '.']);
    let h = blake3::hash(owner.as_bytes()).to_hex();
    format!("{kept}-{}", &h[..8])
}

/// The name of a pod of `owner`: `<owner>-<suffix>` when it fits
/// `MAX_POD_NAME` characters, else the owner shortened (`short_owner`) and,
/// if still too long, the whole cut with a hash, as Kubernetes shortens
/// generated names.
pub fn derived_pod_name(owner: &str, suffix: &str) -> String {
    let full = format!("{owner}-{suffix}");
    if full.len() <= MAX_POD_NAME {
        return full;
    }
    let short = format!("{}-{suffix}", short_owner(owner));
    if short.len() <= MAX_POD_NAME {
        return short;
    }
    let h = blake3::hash(full.as_bytes()).to_hex();
    let cut = short.char_indices().nth(MAX_POD_NAME - 9).map_or(short.len(), |(i, _)| i);
    format!("{}-{}", short[..cut].trim_end_matches(['-', '.']), &h[..8])
}

/// The suffix of a pod name derived from `owner` (`derived_pod_name`), if
/// it is one: what follows `<owner>-` or `<short owner>-`.
pub fn pod_suffix<'a>(owner: &str, name: &'a str) -> Option<&'a str> {
    if name.len() > MAX_POD_NAME {
        return None;
    }
    if let Some(rest) = name.strip_prefix(owner).and_then(|r| r.strip_prefix('-')) {
        return Some(rest);
    }
    // The short form only where the full one would not have fitted.
    let short = short_owner(owner);
    name.strip_prefix(short.as_str())
        .and_then(|r| r.strip_prefix('-'))
        .filter(|rest| owner.len() + 1 + rest.len() > MAX_POD_NAME)
}

/// RFC 1123 label: lower-case alphanumerics and '-', starting and ending
/// alphanumeric, at most `max` characters.
pub fn dns_label(s: &str, max: usize) -> Result<(), Invalid> {
    if s.is_empty() {
        return Err(Invalid("must not be empty".into()));
    }
    if s.len() > max {
        return Err(Invalid(format!("must be at most {max} characters (has {})", s.len())));
    }
    let ok_chars = s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let b = s.as_bytes();
    let ok_ends = b[0].is_ascii_alphanumeric() && b[b.len() - 1].is_ascii_alphanumeric();
    if !ok_chars || !ok_ends {
        return Err(Invalid(format!(
            "{s:?} is not a valid name: use lower-case letters, digits and '-', starting and ending with a letter or digit"
        )));
    }
    Ok(())
}

/// A port name (IANA service name): at most 15 characters, lower-case
/// alphanumerics and '-', with at least one letter.
pub fn port_name(s: &str) -> Result<(), Invalid> {
    dns_label(s, 15)?;
    if !s.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(Invalid(format!("port name {s:?} must contain at least one letter")));
    }
    Ok(())
}

fn label_segment(s: &str, what: &str) -> Result<(), Invalid> {
    if s.len() > 63 {
        return Err(Invalid(format!("{what} {s:?} must be at most 63 characters")));
    }
    if s.is_empty() {
        return Ok(());
    }
    let b = s.as_bytes();
    let ok_chars = b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if !ok_chars || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return Err(Invalid(format!(
            "{what} {s:?} must use letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        )));
    }
    Ok(())
}

/// A label key: optional DNS prefix and '/', then a name segment.
pub fn label_key(s: &str) -> Result<(), Invalid> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix
        && (p.is_empty() || p.len() > 253 || !p.split('.').all(|l| dns_label(l, 63).is_ok()))
    {
        return Err(Invalid(format!("label key prefix {p:?} must be a DNS subdomain")));
    }
    if name.is_empty() {
        return Err(Invalid(format!("label key {s:?} has an empty name")));
    }
    label_segment(name, "label key")
}

/// A label value: empty, or a name segment.
pub fn label_value(s: &str) -> Result<(), Invalid> {
    label_segment(s, "label value")
}

/// An environment variable name: letters, digits, '_', '-', '.'; not starting
/// with a digit.
pub fn env_name(s: &str) -> Result<(), Invalid> {
    let b = s.as_bytes();
    if b.is_empty() {
        return Err(Invalid("environment variable name must not be empty".into()));
    }
    if b[0].is_ascii_digit() || !b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')) {
        return Err(Invalid(format!(
            "{s:?} is not a valid environment variable name: use letters, digits, '_', '-' or '.', not starting with a digit"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_names() {
        assert!(dns_label("web-1", 63).is_ok());
        assert!(dns_label("Web", 63).is_err());
        assert!(dns_label("-web", 63).is_err());
        assert!(dns_label("", 63).is_err());
        assert!(dns_label(&"a".repeat(64), 63).is_err());
        assert!(label_key("app.kubernetes.io/name").is_ok());
        assert!(label_key("app").is_ok());
        assert!(label_key("/app").is_err());
        assert!(label_key("bad key").is_err());
        assert!(label_value("").is_ok());
        assert!(label_value("v1.2_3").is_ok());
        assert!(label_value("-x").is_err());
        assert!(port_name("http").is_ok());
        assert!(port_name("8080").is_err());
        assert!(env_name("PORT").is_ok());
        assert!(env_name("1X").is_err());
        assert!(dns_subdomain("web.v2", 253).is_ok());
        assert!(dns_subdomain("web..v2", 253).is_err());
        let l63 = "a".repeat(63);
        let max = format!("{l63}.{l63}.{l63}.{}", "b".repeat(61));
        assert_eq!(max.len(), 253);
        assert!(dns_subdomain(&max, 253).is_ok());
        assert!(dns_subdomain(&format!("{max}c"), 253).is_err());
        assert!(dns_subdomain(&"a".repeat(64), 253).is_err(), "each label at most 63");
    }

    #[test]
    fn long_owners_get_pod_names_within_63_characters_that_never_collide() {
        assert_eq!(derived_pod_name("web", "5583474615-0"), "web-5583474615-0", "short names stay as they are");
        let a = format!("{}-a", "x".repeat(250));
        let b = format!("{}-b", "x".repeat(250));
        for owner in [&a, &b] {
            for suffix in [
                "5583474615-0",
                "5583474615-9999",
                "0",
                "a-node-name-of-sixty-three-characters-is-allowed-by-kubernetes1",
            ] {
                let n = derived_pod_name(owner, suffix);
                assert!(n.len() <= MAX_POD_NAME, "{n} has {}", n.len());
                assert!(dns_label(&n, MAX_POD_NAME).is_ok(), "{n}");
            }
        }
        assert_ne!(derived_pod_name(&a, "0"), derived_pod_name(&b, "0"), "one prefix, two owners, two names");
        // The suffix comes back from the name for either form.
        let n = derived_pod_name(&a, "5583474615-3");
        assert_eq!(pod_suffix(&a, &n), Some("5583474615-3"));
        assert_eq!(pod_suffix(&b, &n), None);
        assert_eq!(pod_suffix("web", "web-5583474615-3"), Some("5583474615-3"));
        // 53 characters (refused before) fits with its suffix as it is.
        let d53 = "d".repeat(53);
        assert!(derived_pod_name(&d53, "5583474615-0").len() <= MAX_POD_NAME);
    }
}
