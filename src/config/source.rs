//! Parsing of declarative text (YAML 1.2, which also reads JSON) into a JSON value tree plus a
//! table of source positions keyed by field path, so that later stages can report
//! `file:line:column: services[0].routes[1].paths[0]: ...` without carrying spans around.
//!
//! Limits: one document per file; aliases are expanded by the YAML loader (with its alias
//! limit); duplicate keys are errors; tags other than the core schema are rejected.

use foldhash::HashMap;
use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use serde_json::{Map, Number, Value};

use super::error::ConfigError;

/// Upper bound on the size of a declarative document (bytes); larger input is refused before parsing.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024 * 1024;

/// 1-based line and column of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// A parsed document: the value tree and where each field came from.
#[derive(Debug, Default)]
pub struct SourceDoc {
    pub locator: Locator,
    pub value: Value,
}

/// Where each field of a document came from, for error messages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Locator {
    /// Name of the source for messages (usually the file path).
    pub name: String,
    positions: HashMap<String, Pos>,
}

impl Locator {
    /// Position of the node at `path` (or of its nearest known ancestor).
    pub fn pos(&self, path: &str) -> Option<Pos> {
        let mut p = path;
        loop {
            if let Some(pos) = self.positions.get(p) {
                return Some(*pos);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }

    /// An error located at `path`.
    pub fn error(&self, path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        let path = path.into();
        let pos = self.pos(&path);
        ConfigError {
            source: self.name.clone(),
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
            path,
            message: message.into(),
        }
    }
}

impl SourceDoc {
    /// A document built from an in-memory value (no positions), e.g. from the Admin API.
    pub fn from_value(name: impl Into<String>, value: Value) -> Self {
        SourceDoc {
            locator: Locator {
                name: name.into(),
                positions: HashMap::default(),
            },
            value,
        }
    }
}

/// Parse YAML or JSON text.
pub fn parse(name: &str, text: &str) -> Result<SourceDoc, ConfigError> {
    let whole = |line, column, message: String| ConfigError {
        source: name.to_string(),
        line,
        column,
        path: String::new(),
        message,
    };
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(whole(
            None,
            None,
            format!("document is larger than {MAX_DOCUMENT_BYTES} bytes"),
        ));
    }
    let docs = MarkedYaml::load_from_str(text).map_err(|e| {
        let m = e.marker();
        whole(
            Some(m.line()),
            Some(m.col() + 1),
            format!("invalid YAML/JSON: {}", e.info()),
        )
    })?;
    let mut docs = docs.into_iter();
    let Some(root) = docs.next() else {
        return Err(whole(None, None, "the document is empty".into()));
    };
    if docs.next().is_some() {
        return Err(whole(
            None,
            None,
            "expected one document, found several (`---`)".into(),
        ));
    }
    let mut out = SourceDoc::from_value(name, Value::Null);
    let mut path = String::new();
    out.value =
        convert(&root, &mut path, &mut out.locator.positions).map_err(|(p, pos, msg)| {
            ConfigError {
                source: name.to_string(),
                line: Some(pos.line),
                column: Some(pos.column),
                path: p,
                message: msg,
            }
        })?;
    Ok(out)
}

type ConvertError = (String, Pos, String);

fn pos_of(node: &MarkedYaml<'_>) -> Pos {
    Pos {
        line: node.span.start.line(),
        column: node.span.start.col() + 1,
    }
}

fn convert(
    node: &MarkedYaml<'_>,
    path: &mut String,
    positions: &mut HashMap<String, Pos>,
) -> Result<Value, ConvertError> {
    let pos = pos_of(node);
    positions.insert(path.clone(), pos);
    Ok(match &node.data {
        YamlData::Value(s) => scalar(s),
        YamlData::Representation(text, _, _) => Value::String(text.to_string()),
        YamlData::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                out.push(convert(item, path, positions)?);
                path.truncate(len);
            }
            Value::Array(out)
        }
        YamlData::Mapping(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map.iter() {
                let key = match &k.data {
                    YamlData::Value(Scalar::String(s)) => s.to_string(),
                    YamlData::Value(s) => match scalar(s) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    },
                    _ => {
                        return Err((
                            path.clone(),
                            pos_of(k),
                            "mapping keys must be plain scalars".into(),
                        ));
                    }
                };
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&key);
                let value = convert(v, path, positions)?;
                // Errors about a field point at its key, which is where a reader looks.
                positions.insert(path.clone(), pos_of(k));
                out.insert(key, value);
                path.truncate(len);
            }
            Value::Object(out)
        }
        YamlData::Tagged(tag, _) => {
            return Err((
                path.clone(),
                pos,
                format!("YAML tag `{tag}` is not supported"),
            ));
        }
        YamlData::Alias(_) | YamlData::BadValue => {
            return Err((path.clone(), pos, "invalid or unresolved value".into()));
        }
    })
}

fn scalar(s: &Scalar<'_>) -> Value {
    match s {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(i) => Value::Number((*i).into()),
        Scalar::FloatingPoint(f) => Number::from_f64(f.into_inner())
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Scalar::String(s) => Value::String(s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_paths() {
        let doc = parse(
            "kong.yml",
            "_format_version: \"3.0\"\nservices:\n- name: a\n  routes:\n  - paths: [/x, /y]\n",
        )
        .unwrap();
        assert_eq!(doc.value["services"][0]["name"], "a");
        let p = doc.locator.pos("services[0].routes[0].paths[1]").unwrap();
        assert_eq!(p.line, 5);
        assert!(p.column > 10);
        assert_eq!(doc.locator.pos("services[0].name").unwrap().line, 3);
        // unknown child falls back to the nearest ancestor
        assert_eq!(doc.locator.pos("services[0].nope").unwrap().line, 3);
    }

    #[test]
    fn json_is_accepted() {
        let doc = parse(
            "c.json",
            r#"{"_format_version": "3.0", "services": [{"name": "a", "port": 80}]}"#,
        )
        .unwrap();
        assert_eq!(doc.value["services"][0]["port"], 80);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = parse("bad.yml", "services:\n  - name: [a\n").unwrap_err();
        assert!(e.line.is_some(), "{e}");
        let e = parse("dup.yml", "a: 1\na: 2\n").unwrap_err();
        assert!(e.message.contains("duplicated"), "{e}");
    }
}
