//! Label and field selectors, as lists and watches take them
//! (`?labelSelector=app=web,tier!=db&fieldSelector=spec.nodeName=n1`).
//!
//! Pure: a selector is parsed once and matched against rendered objects.
//! The grammar is Kubernetes':
//!
//! - labels: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`
//!   (exists), `!k` (does not exist), joined by commas;
//! - fields: `path=v`, `path==v`, `path!=v`, joined by commas, where the
//!   path is a dotted JSON path (`metadata.name`, `spec.nodeName`,
//!   `involvedObject.uid`...); a missing field reads as "", so
//!   `spec.nodeName=` selects unscheduled pods, as in Kubernetes.

use serde_json::Value;

/// A selector that could not be parsed: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{which} {given:?}: {why}")]
pub struct SelectorError {
    pub which: &'static str,
    pub given: String,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

impl Requirement {
    fn matches(&self, value: Option<&str>) -> bool {
        match &self.op {
            Op::Eq(v) => value == Some(v.as_str()),
            Op::NotEq(v) => value != Some(v.as_str()),
            Op::In(vs) => value.is_some_and(|x| vs.iter().any(|v| v == x)),
            Op::NotIn(vs) => value.is_none_or(|x| !vs.iter().any(|v| v == x)),
            Op::Exists => value.is_some(),
            Op::NotExists => value.is_none(),
        }
    }
}

/// A label selector; the empty one matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

/// A field selector; the empty one matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<Requirement>);

/// Splits at top-level commas (not inside parentheses, not escaped).
fn split_terms(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut depth, mut escaped) = (0usize, false);
    for c in s.chars() {
        if escaped {
            cur.push('\\');
            cur.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '(' => {
                depth += 1;
                cur.push(c)
            }
            ')' => {
                depth = depth.saturating_sub(1);
                cur.push(c)
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if escaped {
        cur.push('\\');
    }
    out.push(cur);
    out.into_iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect()
}

/// Label keys and values: what Kubernetes allows, loosely (no spaces,
/// no operators).
fn valid_token(t: &str) -> bool {
    !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let err = |why: String| SelectorError { which: "labelSelector", given: s.to_string(), why };
        let mut reqs = Vec::new();
        for term in split_terms(s) {
            let req = if let Some(key) = term.strip_prefix('!') {
                Requirement { key: key.trim().to_string(), op: Op::NotExists }
            } else if let Some((k, v)) = term.split_once("!=") {
                Requirement { key: k.trim().to_string(), op: Op::NotEq(v.trim().to_string()) }
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Requirement { key: k.trim().to_string(), op: Op::Eq(v.trim().to_string()) }
            } else if let Some(open) = term.find('(') {
                let head: Vec<&str> = term[..open].split_whitespace().collect();
                let Some(body) = term[open + 1..].strip_suffix(')') else {
                    return Err(err(format!("{term:?} has no closing parenthesis")));
                };
                let values: Vec<String> =
                    body.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect();
                if values.iter().any(|v| !valid_token(v)) {
                    return Err(err(format!("{term:?} has an invalid value")));
                }
                match head.as_slice() {
                    [k, "in"] => Requirement { key: k.to_string(), op: Op::In(values) },
                    [k, "notin"] => Requirement { key: k.to_string(), op: Op::NotIn(values) },
                    _ => return Err(err(format!("{term:?}: expected `key in (a,b)` or `key notin (a,b)`"))),
                }
            } else {
                Requirement { key: term.trim().to_string(), op: Op::Exists }
            };
            if !valid_token(&req.key) {
                return Err(err(format!(
                    "{term:?}: {:?} is not a label key (letters, digits, '-', '_', '.', '/')",
                    req.key
                )));
            }
            if let Op::Eq(v) | Op::NotEq(v) = &req.op
                && !v.is_empty()
                && !valid_token(v)
            {
                return Err(err(format!("{term:?}: {v:?} is not a label value")));
            }
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an object's `metadata.labels` match.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        self.0.iter().all(|r| r.matches(labels.and_then(|l| l.get(&r.key)).and_then(Value::as_str)))
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Finds the first unescaped occurrence of `pat`.
fn find_unescaped(s: &str, pat: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        if s[i..].starts_with(pat) {
            return Some(i);
        }
        i += 1;
    }
    None
}

impl FieldSelector {
    pub fn parse(s: &str) -> Result<FieldSelector, SelectorError> {
        let err = |why: String| SelectorError { which: "fieldSelector", given: s.to_string(), why };
        let mut reqs = Vec::new();
        for term in split_terms(s) {
            let (key, op) = if let Some(i) = find_unescaped(&term, "!=") {
                (&term[..i], Op::NotEq(unescape(&term[i + 2..])))
            } else if let Some(i) = find_unescaped(&term, "==") {
                (&term[..i], Op::Eq(unescape(&term[i + 2..])))
            } else if let Some(i) = find_unescaped(&term, "=") {
                (&term[..i], Op::Eq(unescape(&term[i + 1..])))
            } else {
                return Err(err(format!("{term:?}: expected `field=value` or `field!=value`")));
            };
            let key = key.trim();
            if key.is_empty() || !key.split('.').all(|p| !p.is_empty() && valid_token(p)) {
                return Err(err(format!("{term:?}: {key:?} is not a field path (like metadata.name)")));
            }
            reqs.push(Requirement { key: key.to_string(), op });
        }
        Ok(FieldSelector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an object's fields match; a missing field reads as "".
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|r| {
            let mut v = object;
            for part in r.key.split('.') {
                v = v.get(part).unwrap_or(&Value::Null);
            }
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                _ => return false,
            };
            r.matches(Some(&s))
        })
    }
}

/// Both selectors of a request.
#[derive(Debug, Clone, Default)]
pub struct Selectors {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Selectors {
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Selectors, SelectorError> {
        Ok(Selectors {
            labels: LabelSelector::parse(labels.unwrap_or_default())?,
            fields: FieldSelector::parse(fields.unwrap_or_default())?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value, node: &str) -> Value {
        json!({"metadata": {"name": "p", "namespace": "default", "labels": labels}, "spec": {"nodeName": node}, "status": {"phase": "Running"}})
    }

    #[test]
    fn label_selectors_match_as_in_kubernetes() {
        let web = pod(json!({"app": "web", "tier": "front"}), "n1");
        let db = pod(json!({"app": "db"}), "n2");
        let cases = [
            ("", true, true),
            ("app=web", true, false),
            ("app==web", true, false),
            ("app!=web", false, true),
            ("app in (web, db)", true, true),
            ("app notin (web)", false, true),
            ("tier", true, false),
            ("!tier", false, true),
            ("app=web,tier=front", true, false),
            ("app=web,tier=back", false, false),
            ("tier notin (back)", true, true),
            ("tier!=back", true, true),
        ];
        for (sel, w, d) in cases {
            let s = LabelSelector::parse(sel).unwrap();
            assert_eq!((s.matches(&web), s.matches(&db)), (w, d), "{sel}");
        }
    }

    #[test]
    fn field_selectors_read_dotted_paths() {
        let p = pod(json!({}), "n1");
        let unscheduled = pod(json!({}), "");
        let cases = [
            ("metadata.name=p", true, true),
            ("metadata.name!=p", false, false),
            ("spec.nodeName=n1", true, false),
            ("spec.nodeName=", false, true),
            ("spec.nodeName!=", true, false),
            ("status.phase==Running,metadata.namespace=default", true, true),
            ("involvedObject.name=x", false, false),
        ];
        for (sel, a, b) in cases {
            let s = FieldSelector::parse(sel).unwrap();
            assert_eq!((s.matches(&p), s.matches(&unscheduled)), (a, b), "{sel}");
        }
        let escaped = FieldSelector::parse(r"metadata.name=a\,b").unwrap();
        assert!(escaped.matches(&json!({"metadata": {"name": "a,b"}})));
    }

    #[test]
    fn bad_selectors_name_what_is_wrong() {
        for (bad, says) in [
            ("app in (web", "closing parenthesis"),
            ("app within (web)", "key in (a,b)"),
            ("a b=c", "not a label key"),
            ("app=we b", "not a label value"),
        ] {
            let e = LabelSelector::parse(bad).unwrap_err();
            assert!(e.to_string().contains(says), "{bad}: {e}");
            assert!(e.to_string().starts_with("labelSelector"), "{e}");
        }
        for (bad, says) in
            [("metadata.name", "field=value"), ("=x", "not a field path"), ("a..b=c", "not a field path")]
        {
            let e = FieldSelector::parse(bad).unwrap_err();
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
    }
}
