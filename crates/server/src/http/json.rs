//! Values as the API's JSON carries them: a string when they are UTF-8, else
//! `{"base64": ...}`; version vectors as objects; counters as numbers of any size.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use driftkv_causal::VersionVector;
use driftkv_wire::FieldValue;
use serde_json::{Value, json};

/// A value as JSON: a string when it is UTF-8, else `{"base64": ...}`.
pub fn json_value(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => Value::String(s.to_string()),
        Err(_) => json!({ "base64": STANDARD.encode(bytes) }),
    }
}

/// The inverse of [`json_value`], for JSON request bodies; `what` names the value in errors.
pub fn value_from_json(v: &Value, what: &str) -> Result<Bytes, String> {
    match v {
        Value::String(s) => Ok(Bytes::from(s.clone().into_bytes())),
        Value::Object(o) if o.len() == 1 && o.get("base64").is_some_and(Value::is_string) => {
            STANDARD
                .decode(o["base64"].as_str().unwrap_or_default())
                .map(Bytes::from)
                .map_err(|e| format!("{what}: bad base64: {e}"))
        }
        Value::Number(_) | Value::Bool(_) => Ok(Bytes::from(v.to_string().into_bytes())),
        _ => Err(format!(
            "{what} must be a string (or {{\"base64\": \"...\"}})"
        )),
    }
}

/// A map field's value as JSON: a number for a counted field (a string past 64 bits), else
/// the value's bytes as [`json_value`] writes them.
pub fn field_json(v: &FieldValue) -> Value {
    match v {
        FieldValue::Int(n) => match i64::try_from(*n) {
            Ok(n) => json!(n),
            Err(_) => json!(n.to_string()),
        },
        FieldValue::Bytes(b) => json_value(b),
    }
}

/// A map's fields as a JSON object of name to [`field_json`].
pub fn fields_json<'a>(
    fields: impl Iterator<Item = (&'a Bytes, FieldValue)>,
) -> serde_json::Map<String, Value> {
    fields
        .map(|(n, v)| (String::from_utf8_lossy(n).into_owned(), field_json(&v)))
        .collect()
}

/// A version vector as `{actor: counter, ...}`.
pub fn vv_json(vv: &VersionVector) -> Value {
    let mut map = serde_json::Map::new();
    for (actor, counter) in vv.iter() {
        map.insert(actor.to_string(), json!(counter));
    }
    Value::Object(map)
}

/// `{"value": n}` for any counter value: concurrent increments through several nodes can sum
/// past 64 bits, which JSON numbers carry fine but `serde_json::Value` cannot hold.
pub fn counter_json(value: i128) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"value\":{value}}}"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_go_to_json_and_back() {
        for raw in [&b"plain"[..], b"\xff\x00"] {
            let shown = json_value(raw);
            assert_eq!(value_from_json(&shown, "v").unwrap(), raw);
        }
        assert_eq!(value_from_json(&json!(12), "v").unwrap(), "12");
        assert!(value_from_json(&json!([1]), "v").is_err());
        assert!(value_from_json(&json!({"base64": "!!"}), "v").is_err());
    }
}
