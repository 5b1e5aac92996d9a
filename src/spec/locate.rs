//! Naming the key an error is about: serde-saphyr reports a line and column,
//! this re-reads the document as a span-annotated tree and finds the YAML path
//! (`services[1]`, `kernel.cmdline`) of the node at that position.
//!
//! Non-goal: anchors and merge keys are not resolved specially; a position
//! inside an alias gives the path where it is referenced.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A YAML node keeping the position of every child.
enum Node {
    Scalar(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<Node>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar(String::new()))
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar(String::new()))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Node::Map(entries))
    }
}

/// What sits at a position: a mapping key (and the path of its mapping) or
/// a value (and its own path).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found {
    Key { map_path: String, key: String },
    Value { path: String },
}

/// Finds the node at `line:column` in `text`; `None` when the text does not
/// parse or nothing starts there.
pub(crate) fn find(text: &str, line: u64, column: u64) -> Option<Found> {
    let root: Spanned<Node> = serde_saphyr::from_str(text).ok()?;
    let at = |s: &Spanned<Node>| s.referenced.line() == line && s.referenced.column() == column;
    search(&root.value, "", &at)
}

fn search(node: &Node, path: &str, at: &dyn Fn(&Spanned<Node>) -> bool) -> Option<Found> {
    match node {
        Node::Scalar(_) => None,
        Node::Seq(items) => items.iter().enumerate().find_map(|(i, item)| {
            let child = format!("{path}[{i}]");
            search(&item.value, &child, at)
                .or_else(|| at(item).then_some(Found::Value { path: child }))
        }),
        Node::Map(entries) => entries.iter().find_map(|(k, v)| {
            let name = match &k.value {
                Node::Scalar(s) => s.as_str(),
                _ => "?",
            };
            if at(k) {
                return Some(Found::Key {
                    map_path: path.to_string(),
                    key: name.to_string(),
                });
            }
            let child = if path.is_empty() {
                name.to_string()
            } else {
                format!("{path}.{name}")
            };
            search(&v.value, &child, at).or_else(|| at(v).then_some(Found::Value { path: child }))
        }),
    }
}
