//! Decode-encode round trips of wire values, shared by the wire tests.

use std::collections::BTreeSet;

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

/// Decodes `value` as `T`, encodes it back and compares: nothing the scheduler sent is lost or
/// changed, and nothing is added (except the `apiVersion`/`kind` k8s-openapi always writes on a
/// Pod, which Go leaves out of informer objects).
pub fn round_trip<T: DeserializeOwned + Serialize>(what: &str, value: &Value) -> T {
    let parsed: T = serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut back = serde_json::to_value(&parsed).unwrap();
    strip_added_type_meta(&mut back, value);
    if back != *value {
        panic!("{what} does not round-trip:\n{}", first_difference("", &back, value));
    }
    parsed
}

/// k8s-openapi always writes `apiVersion`/`kind` on a Pod; Go omits the empty TypeMeta of pods
/// from an informer. Drops them where `want` has none.
pub fn strip_added_type_meta(back: &mut Value, want: &Value) {
    match (back, want) {
        (Value::Object(b), Value::Object(w)) => {
            for key in ["apiVersion", "kind"] {
                if !w.contains_key(key) {
                    b.remove(key);
                }
            }
            for (k, bv) in b.iter_mut() {
                if let Some(wv) = w.get(k) {
                    strip_added_type_meta(bv, wv);
                }
            }
        }
        (Value::Array(b), Value::Array(w)) => {
            for (bv, wv) in b.iter_mut().zip(w) {
                strip_added_type_meta(bv, wv);
            }
        }
        _ => {}
    }
}

/// The first JSON path where `got` and `want` differ, for a readable failure.
fn first_difference(path: &str, got: &Value, want: &Value) -> String {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let keys: BTreeSet<&String> = g.keys().chain(w.keys()).collect();
            for k in keys {
                match (g.get(k), w.get(k)) {
                    (Some(gv), Some(wv)) if gv == wv => {}
                    (Some(gv), Some(wv)) => return first_difference(&format!("{path}/{k}"), gv, wv),
                    (gv, wv) => return format!("{path}/{k}: got {gv:?}, sent {wv:?}"),
                }
            }
            String::new()
        }
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => g
            .iter()
            .zip(w)
            .enumerate()
            .find(|(_, (gv, wv))| gv != wv)
            .map(|(i, (gv, wv))| first_difference(&format!("{path}/{i}"), gv, wv))
            .unwrap_or_default(),
        _ => format!("{path}: got {got}, sent {want}"),
    }
}
