//! YAML documents to JSON values, remembering where every field came from.
//!
//! Owns the first step of manifest parsing: split a multi-document YAML text,
//! turn each document into a `serde_json::Value`, and record the line and
//! column of every field path (`spec.template.spec.containers[0].image`) so
//! that later validation errors can point at the source. It knows nothing of
//! Kubernetes kinds.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// Line and column (1-based) of a value in its source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One YAML document as a JSON value plus the position of each field path.
#[derive(Debug, Clone)]
pub struct LocatedDoc {
    pub value: serde_json::Value,
    /// Position of each path; the empty path is the document itself.
    pub positions: BTreeMap<String, Pos>,
}

impl LocatedDoc {
    /// Position of `path`, or of its nearest ancestor that has one.
    pub fn pos(&self, path: &str) -> Option<Pos> {
        let mut p = path.to_string();
        loop {
            if let Some(pos) = self.positions.get(&p) {
                return Some(*pos);
            }
            let cut = p.rfind(['.', '['])?;
            p.truncate(cut);
        }
    }

    /// A document with no source positions (JSON bodies sent to the API).
    pub fn from_json(value: serde_json::Value) -> Self {
        Self { value, positions: BTreeMap::new() }
    }
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub message: String,
    pub pos: Option<Pos>,
}

/// Appends one path segment the way error paths are printed everywhere.
pub fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_string() } else { format!("{parent}.{key}") }
}

/// Appends a sequence index: `containers[0]`.
pub fn join_index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// A YAML node with its position, as the deserializer hands it over.
enum Node {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Node, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::I64(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::U64(v))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        i64::try_from(v).map(Node::I64).map_err(|_| E::custom("integer out of range"))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        u64::try_from(v).map(Node::U64).map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::F64(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, _v: &[u8]) -> Result<Node, E> {
        Err(E::custom("binary values are not supported"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            out.push(item);
        }
        Ok(Node::Seq(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut out = Vec::new();
        while let Some(k) = map.next_key::<Node>()? {
            let v = map.next_value::<Spanned<Node>>()?;
            out.push((k, v));
        }
        Ok(Node::Map(out))
    }
}

fn key_string(k: &Node) -> Result<String, super::Invalid> {
    Ok(match k {
        Node::Str(s) => s.clone(),
        Node::Bool(b) => b.to_string(),
        Node::I64(i) => i.to_string(),
        Node::U64(u) => u.to_string(),
        Node::F64(f) => f.to_string(),
        Node::Null => "null".to_string(),
        Node::Seq(_) | Node::Map(_) => return Err(super::Invalid("mapping keys must be scalars".into())),
    })
}

fn convert(
    node: Spanned<Node>,
    path: &str,
    positions: &mut BTreeMap<String, Pos>,
) -> Result<serde_json::Value, YamlError> {
    let loc = node.referenced;
    if loc.line() > 0 {
        positions.insert(path.to_string(), Pos { line: loc.line() as u32, column: loc.column() as u32 });
    }
    let here = positions.get(path).copied();
    Ok(match node.value {
        Node::Null => serde_json::Value::Null,
        Node::Bool(b) => serde_json::Value::Bool(b),
        Node::I64(i) => serde_json::Value::from(i),
        Node::U64(u) => serde_json::Value::from(u),
        Node::F64(f) => serde_json::Number::from_f64(f)
            .map(serde_json::Value::Number)
            .ok_or_else(|| YamlError { message: format!("{path}: {f} is not a finite number"), pos: here })?,
        Node::Str(s) => serde_json::Value::String(s),
        Node::Seq(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                out.push(convert(item, &join_index(path, i), positions)?);
            }
            serde_json::Value::Array(out)
        }
        Node::Map(entries) => {
            let mut out = serde_json::Map::new();
            for (k, v) in entries {
                let key = key_string(&k).map_err(|e| YamlError { message: e.0, pos: here })?;
                let child = join_key(path, &key);
                let value = convert(v, &child, positions)?;
                if out.insert(key.clone(), value).is_some() {
                    return Err(YamlError {
                        message: format!("duplicate key {key:?}"),
                        pos: positions.get(&child).copied(),
                    });
                }
            }
            serde_json::Value::Object(out)
        }
    })
}

/// Parses a multi-document YAML text. Empty documents are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<LocatedDoc>, YamlError> {
    // YAML 1.2 booleans: only true/false, so `y`, `on` and `no` stay strings.
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    // File modes as Kubernetes manifests write them (`defaultMode: 0400`):
    // octal, as in the YAML 1.1 that Kubernetes reads.
    options.legacy_octal_numbers = true;
    let docs: Vec<Spanned<Node>> = serde_saphyr::from_multiple_with_options(text, options).map_err(|e| YamlError {
        message: first_line(&e.to_string()),
        pos: e.location().map(|l| Pos { line: l.line() as u32, column: l.column() as u32 }),
    })?;
    let mut out = Vec::with_capacity(docs.len());
    for doc in docs {
        if matches!(doc.value, Node::Null) {
            continue;
        }
        let mut positions = BTreeMap::new();
        let value = convert(doc, "", &mut positions)?;
        out.push(LocatedDoc { value, positions });
    }
    Ok(out)
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_nested_fields() {
        let text = "a: 1\nb:\n  c:\n    - x: y\n    - z\n---\nq: true\n";
        let docs = parse_documents(text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].value["b"]["c"][0]["x"], "y");
        assert_eq!(docs[0].pos("b.c[0].x").map(|p| p.line), Some(4));
        assert_eq!(docs[0].pos("b.c[1]").map(|p| p.line), Some(5));
        // Unknown deeper paths fall back to the nearest ancestor.
        assert_eq!(docs[0].pos("b.c[1].nope").map(|p| p.line), Some(5));
        assert_eq!(docs[1].value["q"], true);
    }

    #[test]
    fn file_modes_are_octal_as_kubernetes_reads_them() {
        let docs = parse_documents("a: 0400\nb: 0644\nc: 420\nd: \"0400\"\n").unwrap();
        assert_eq!(docs[0].value["a"], 0o400);
        assert_eq!(docs[0].value["b"], 0o644);
        assert_eq!(docs[0].value["c"], 420);
        assert_eq!(docs[0].value["d"], "0400");
    }

    #[test]
    fn empty_documents_are_skipped() {
        let docs = parse_documents("---\n---\na: 1\n---\n").unwrap();
        assert_eq!(docs.len(), 1);
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse_documents("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.is_some(), "{err:?}");
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let err = parse_documents("a: 1\na: 2\n").unwrap_err();
        assert!(err.message.contains("duplicate"), "{err:?}");
    }
}
