//! Name rules shared by objects, containers, ports and labels (Kubernetes').
//!
//! Each check returns `Err(Invalid)` with a reason in words a user can act on.

use super::Invalid;

/// Longest object name. A pod is named `<owner>-<index>`, so owners keep room
/// for the suffix inside a 63-character DNS label.
pub const MAX_OBJECT_NAME: usize = 52;

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
    }
}
