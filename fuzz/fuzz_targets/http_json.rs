//! Fuzzes what the HTTP API does with JSON. Its body helpers (`json_body`, `value_from_json`,
//! `members_of`) are private, so this covers the public pieces they stand on:
//!
//! - a request body through `serde_json::from_slice::<serde_json::Value>` (as `json_body`
//!   reads it), then the fields the handlers pick (`delta` as an i64, `key` as a string,
//!   `value`, and the `add`/`remove` lists); a parsed value must serialize and parse again to
//!   an equal value (floats within the default parser's precision, see `close`);
//! - the answer side, `driftkv_server::http::json_value`, on the input as a stored value: a
//!   UTF-8 value must come back as a JSON string equal to it, any other as
//!   `{"base64": ...}` decoding to its bytes, and either way survive JSON text unchanged.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use driftkv_server::http::json_value;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Equality as the API reads values back: numbers by their integer value when they have one,
/// else as floats, within what the float parser loses (see [`close`]).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.as_i64().is_some() || x.as_u64().is_some() {
                return x.as_i64() == y.as_i64() && x.as_u64() == y.as_u64();
            }
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => close(x, y),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Whether two floats are the same number as far as serde_json's default float parser can
/// tell: without its `float_roundtrip` feature (the server does not enable it) it reads long
/// mantissas approximately, so its own output may read back a few bits off. A relative error
/// of 1e-12 is far above that and far below a number being mangled.
fn close(x: f64, y: f64) -> bool {
    x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()) || (x - y).abs() <= f64::MIN_POSITIVE
}

/// What the handlers read from a body (their own checks are private; this reads the same
/// fields the same ways).
fn pick_fields(body: &Value) {
    let _ = body.get("delta").and_then(Value::as_i64);
    let _ = body.get("key").and_then(Value::as_str);
    if let Some(value) = body.get("value") {
        let _ = value.to_string();
        if let Some(Value::String(b64)) = value.as_object().and_then(|o| o.get("base64")) {
            let _ = STANDARD.decode(b64);
        }
    }
    for field in ["add", "remove"] {
        if let Some(Value::Array(items)) = body.get(field) {
            for item in items {
                let _ = item.as_str();
            }
        }
    }
}

fn body(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    pick_fields(&value);
    let text = serde_json::to_vec(&value).expect("a JSON value serializes");
    let again: Value = serde_json::from_slice(&text)
        .unwrap_or_else(|e| panic!("serialized JSON does not parse: {e}"));
    assert!(same(&value, &again), "JSON changed through a round trip");
}

fn answer(data: &[u8]) {
    let shown = json_value(data);
    match (std::str::from_utf8(data), &shown) {
        (Ok(text), Value::String(s)) => assert_eq!(s, text, "a UTF-8 value changed"),
        (Err(_), Value::Object(o)) => {
            assert_eq!(o.len(), 1, "extra fields beside base64: {shown}");
            let b64 = o["base64"].as_str().expect("base64 is a string");
            let bytes = STANDARD.decode(b64).expect("base64 decodes");
            assert_eq!(bytes, data, "a binary value changed");
        }
        _ => panic!("json_value shaped {data:?} as {shown}"),
    }
    let text = serde_json::to_string(&shown).expect("a JSON value serializes");
    let again: Value = serde_json::from_str(&text).expect("serialized JSON parses");
    assert_eq!(again, shown, "a value's JSON changed through its text");
}

fuzz_target!(|data: &[u8]| {
    body(data);
    answer(data);
});
