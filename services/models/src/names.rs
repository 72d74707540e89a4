//! Class names as model files carry them in their ONNX metadata (`names`), in class-index
//! order. Exporters write them in one of two ways:
//!
//! - a JSON list, `["apple", "bread"]` (the shipped YOLOv5 model, most hand-made exports);
//! - a Python literal, because Ultralytics stores `str(model.names)`: a dict of class index
//!   to name, `{0: 'person', 1: "chef's salad"}` (YOLOv8/YOLO11), or a list,
//!   `['person', 'bicycle']` (older YOLOv5 exports).
//!
//! Python literals are read with `py_literal`, which decodes Python's string escapes
//! (`\'`, `\\`, `\n`, `\xe9`, `\u00e9`, …) as Python does; JSON with `serde_json`. The two
//! differ (`\/` is an escape in JSON only, `\'` and `\x..` in Python only), so a list
//! is read as JSON first and as a Python literal only when it is not JSON.

use std::collections::BTreeMap;

use py_literal::Value;

/// Why metadata `names` is not a list of class names; the message says what was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NamesError(String);

/// Reads metadata `names`: a JSON list of strings, a Python list of strings, or a Python
/// dict whose keys are the class indexes `0..N-1` (in any order; integers, or strings of
/// digits as `json.dumps` of such a dict writes them) and whose values are strings.
/// Returns the names in class-index order, character for character (nothing trimmed).
pub fn parse_class_names(text: &str) -> Result<Vec<String>, NamesError> {
    let trimmed = text.trim();
    let names = if trimmed.starts_with('[') {
        match serde_json::from_str::<Vec<String>>(trimmed) {
            Ok(names) => names,
            Err(json) => match python(trimmed)? {
                Value::List(items) | Value::Tuple(items) => list(items)?,
                _ => return Err(NamesError(format!("not a list of names: {json}"))),
            },
        }
    } else if trimmed.starts_with('{') {
        match python(trimmed)? {
            Value::Dict(pairs) => dict(pairs)?,
            _ => return Err(NamesError("not a dict of class index to name".into())),
        }
    } else {
        return Err(NamesError(format!(
            "expected a list (`[\"apple\", ...]`) or a dict (`{{0: 'apple', ...}}`) of class \
             names, found {}",
            preview(trimmed)
        )));
    };
    if names.is_empty() {
        return Err(NamesError("the list of class names is empty".into()));
    }
    Ok(names)
}

fn python(text: &str) -> Result<Value, NamesError> {
    text.parse::<Value>()
        .map_err(|e| NamesError(format!("not a Python literal: {e}")))
}

fn list(items: Vec<Value>) -> Result<Vec<String>, NamesError> {
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::String(name) => Ok(name),
            other => Err(NamesError(format!(
                "class {index}: expected a string, found {}",
                kind(&other)
            ))),
        })
        .collect()
}

fn dict(pairs: Vec<(Value, Value)>) -> Result<Vec<String>, NamesError> {
    let count = pairs.len();
    let mut by_index = BTreeMap::new();
    for (key, value) in pairs {
        let index = match &key {
            Value::Integer(i) => usize::try_from(i).ok(),
            Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse::<usize>().ok()
            }
            _ => None,
        }
        .ok_or_else(|| {
            NamesError(format!(
                "dict key {} is not a class index (an integer 0..N-1)",
                short(&key)
            ))
        })?;
        let Value::String(name) = value else {
            return Err(NamesError(format!(
                "class {index}: expected a string, found {}",
                kind(&value)
            )));
        };
        if by_index.insert(index, name).is_some() {
            return Err(NamesError(format!("class index {index} appears twice")));
        }
    }
    if let Some(missing) = (0..count).find(|i| !by_index.contains_key(i)) {
        return Err(NamesError(format!(
            "the dict's keys must be the class indexes 0..{}: {missing} is missing",
            count.saturating_sub(1)
        )));
    }
    Ok(by_index.into_values().collect())
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Bytes(_) => "bytes",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Complex(_) => "a complex number",
        Value::Tuple(_) => "a tuple",
        Value::List(_) => "a list",
        Value::Dict(_) => "a dict",
        Value::Set(_) => "a set",
        Value::Boolean(_) => "a boolean",
        Value::None => "None",
    }
}

fn short(value: &Value) -> String {
    preview(&value.to_string())
}

/// The start of a long text, for messages.
fn preview(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{:?}…", &text[..end]),
        None => format!("{text:?}"),
    }
}
