//! Turning untrusted `params` into typed values with errors that name the offending field.
//!
//! serde alone would report "missing field `parts`"; clients deserve
//! "params.message.parts must not be empty". Messages are checked by hand for the rules A2A
//! clients trip over (null objects, empty parts, unknown part kinds, missing `kind`), then
//! deserialized with the JSON path of any remaining error.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::RpcError;
use crate::protocol::Message;

/// The params object; `what` names the method for the error.
pub fn object(params: Option<Value>) -> Result<Map<String, Value>, RpcError> {
    match params {
        Some(Value::Object(map)) => Ok(map),
        None | Some(Value::Null) => Err(RpcError::invalid_params("params is required and must be an object")),
        Some(other) => Err(RpcError::invalid_params(format!("params must be an object, got {}", type_name(&other)))),
    }
}

/// Deserializes `value` (found at `path`) into `T`, naming the failing field.
pub fn typed<T: DeserializeOwned>(value: Value, path: &str) -> Result<T, RpcError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let at = if inner == "." { path.to_string() } else { format!("{path}.{inner}") };
        RpcError::invalid_params(format!("{at}: {}", e.into_inner()))
    })
}

/// A required non-empty string field.
pub fn required_str(map: &Map<String, Value>, key: &str, path: &str) -> Result<String, RpcError> {
    match map.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(RpcError::invalid_params(format!("{path}.{key} must not be empty"))),
        None | Some(Value::Null) => Err(RpcError::invalid_params(format!("{path}.{key} is required"))),
        Some(other) => {
            Err(RpcError::invalid_params(format!("{path}.{key} must be a string, got {}", type_name(other))))
        }
    }
}

/// An optional object field; `null` counts as absent.
pub fn optional_object(map: &mut Map<String, Value>, key: &str, path: &str) -> Result<Option<Value>, RpcError> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v)),
        Some(other) => {
            Err(RpcError::invalid_params(format!("{path}.{key} must be an object, got {}", type_name(&other))))
        }
    }
}

/// Validates and normalizes a message found at `path`.
pub fn message(value: Option<Value>, path: &str) -> Result<Message, RpcError> {
    let mut map = match value {
        Some(Value::Object(map)) => map,
        None => return Err(RpcError::invalid_params(format!("{path} is required"))),
        Some(other) => {
            return Err(RpcError::invalid_params(format!("{path} must be an object, got {}", type_name(&other))))
        }
    };
    match map.get("kind") {
        None | Some(Value::Null) => {
            map.insert("kind".into(), Value::from("message"));
        }
        Some(Value::String(k)) if k == "message" => {}
        Some(other) => return Err(RpcError::invalid_params(format!("{path}.kind must be \"message\", got {other}"))),
    }
    required_str(&map, "messageId", path)?;
    match map.get("role") {
        Some(Value::String(r)) if r == "user" || r == "agent" => {}
        None | Some(Value::Null) => return Err(RpcError::invalid_params(format!("{path}.role is required"))),
        Some(other) => {
            return Err(RpcError::invalid_params(format!("{path}.role must be \"user\" or \"agent\", got {other}")))
        }
    }
    // Optional fields sent as null mean absent.
    for key in ["taskId", "contextId", "metadata", "referenceTaskIds", "extensions"] {
        if map.get(key).is_some_and(Value::is_null) {
            map.remove(key);
        }
    }
    match map.get_mut("parts") {
        Some(Value::Array(parts)) if parts.is_empty() => {
            return Err(RpcError::invalid_params(format!("{path}.parts must not be empty")))
        }
        Some(Value::Array(parts)) => {
            for (i, part) in parts.iter_mut().enumerate() {
                normalize_part(part, &format!("{path}.parts[{i}]"))?;
            }
        }
        None | Some(Value::Null) => return Err(RpcError::invalid_params(format!("{path}.parts is required"))),
        Some(other) => {
            return Err(RpcError::invalid_params(format!("{path}.parts must be an array, got {}", type_name(other))))
        }
    }
    typed(Value::Object(map), path)
}

/// Checks one part and fills in a missing `kind` from its content.
fn normalize_part(part: &mut Value, path: &str) -> Result<(), RpcError> {
    let Value::Object(map) = part else {
        return Err(RpcError::invalid_params(format!("{path} must be an object, got {}", type_name(part))));
    };
    let kind = match map.get("kind") {
        Some(Value::String(k)) => k.clone(),
        None | Some(Value::Null) => {
            let inferred = ["text", "file", "data"].into_iter().find(|k| map.contains_key(*k));
            match inferred {
                Some(k) => {
                    map.insert("kind".into(), Value::from(k));
                    k.to_string()
                }
                None => {
                    return Err(RpcError::invalid_params(format!(
                        "{path} has no kind and no text, file or data to infer it from"
                    )))
                }
            }
        }
        Some(other) => return Err(RpcError::invalid_params(format!("{path}.kind must be a string, got {other}"))),
    };
    if map.get("metadata").is_some_and(Value::is_null) {
        map.remove("metadata");
    }
    let field_ok = match kind.as_str() {
        "text" => matches!(map.get("text"), Some(Value::String(_))),
        "file" => match map.get("file") {
            Some(Value::Object(file)) => {
                matches!(file.get("bytes"), Some(Value::String(_))) || matches!(file.get("uri"), Some(Value::String(_)))
            }
            _ => false,
        },
        "data" => matches!(map.get("data"), Some(Value::Object(_))),
        other => {
            return Err(RpcError::invalid_params(format!(
                "{path}.kind: unknown part kind \"{other}\" (expected text, file or data)"
            )))
        }
    };
    if !field_ok {
        let need = match kind.as_str() {
            "text" => "a string `text`",
            "file" => "a `file` object with `bytes` or `uri`",
            _ => "an object `data`",
        };
        return Err(RpcError::invalid_params(format!("{path} is a {kind} part and needs {need}")));
    }
    Ok(())
}

/// JSON type name for error messages.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A task id from `params.id`.
pub fn task_id(map: &Map<String, Value>) -> Result<String, RpcError> {
    required_str(map, "id", "params")
}

/// `historyLength`: absent or null → None; negative → error; 0 → not cut.
pub fn history_length(value: Option<&Value>, path: &str) -> Result<Option<usize>, RpcError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(n) if n < 0 => Err(RpcError::invalid_params(format!("{path} must not be negative, got {n}"))),
            Some(n) => Ok(Some(n as usize)),
            None => Err(RpcError::invalid_params(format!("{path} must be an integer, got {n}"))),
        },
        Some(other) => Err(RpcError::invalid_params(format!("{path} must be an integer, got {}", type_name(other)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn missing_kinds_are_inferred() {
        let m = message(Some(json!({"messageId": "m", "role": "user", "parts": [{"text": "hi"}]})), "params.message")
            .unwrap();
        assert_eq!(m.text(), "hi");
    }

    #[test]
    fn empty_parts_are_named() {
        let e = message(Some(json!({"messageId": "m", "role": "user", "parts": []})), "params.message").unwrap_err();
        assert_eq!(e.message, "params.message.parts must not be empty");
    }

    #[test]
    fn unknown_part_kind_is_rejected() {
        let e =
            message(Some(json!({"messageId": "m", "role": "user", "parts": [{"kind": "video"}]})), "params.message")
                .unwrap_err();
        assert!(e.message.contains("unknown part kind \"video\""), "{}", e.message);
    }

    #[test]
    fn null_message_is_rejected() {
        let e = message(Some(Value::Null), "params.message").unwrap_err();
        assert_eq!(e.message, "params.message must be an object, got null");
    }
}
