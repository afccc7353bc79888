//! JSON decoding as `encoding/json` does it into the typed v1 objects: a type mismatch is an error
//! (the create answers 400), an unknown field is dropped (and reported, for the `Warning` header),
//! and `null` means "absent". It only knows shapes, not what values are valid.

use serde_json::Value;

/// The JSON shape of a v1 type: enough of the Go struct for `encoding/json` decoding semantics.
pub enum Shape {
    Str,
    Int,
    Any,
    StrMap,
    StrList,
    Obj(&'static [(&'static str, Shape)]),
    List(&'static Shape),
}

use Shape::{Any, Int, List, Obj, Str, StrList, StrMap};

static META: &[(&str, Shape)] = &[
    ("name", Str),
    ("generateName", Str),
    ("namespace", Str),
    ("selfLink", Str),
    ("uid", Str),
    ("resourceVersion", Str),
    ("generation", Int),
    ("creationTimestamp", Any),
    ("deletionTimestamp", Any),
    ("deletionGracePeriodSeconds", Int),
    ("labels", StrMap),
    ("annotations", StrMap),
    ("ownerReferences", Any),
    ("finalizers", StrList),
    ("managedFields", Any),
];
static LAYER: &[(&str, Shape)] = &[("name", Str), ("size", Int), ("mediaType", Str)];
static MANIFEST: &[(&str, Shape)] = &[
    ("digest", Str),
    ("mediaType", Str),
    ("manifestSize", Int),
    ("architecture", Str),
    ("os", Str),
    ("variant", Str),
];
pub static IMAGE: &[(&str, Shape)] = &[
    ("apiVersion", Str),
    ("kind", Str),
    ("metadata", Obj(META)),
    ("dockerImageReference", Str),
    ("dockerImageMetadata", Any),
    ("dockerImageMetadataVersion", Str),
    ("dockerImageLayers", List(&Obj(LAYER))),
    ("signatures", Any),
    ("dockerImageSignatures", Any),
    ("dockerImageManifestMediaType", Str),
    ("dockerImageManifest", Str),
    ("dockerImageConfig", Str),
    ("dockerImageManifests", List(&Obj(MANIFEST))),
];
pub static MAPPING: &[(&str, Shape)] = &[
    ("apiVersion", Str),
    ("kind", Str),
    ("metadata", Obj(META)),
    ("image", Obj(IMAGE)),
    ("tag", Str),
];
static FROM: &[(&str, Shape)] = &[("kind", Str), ("namespace", Str), ("name", Str)];
static TAG_REF: &[(&str, Shape)] = &[
    ("name", Str),
    ("annotations", StrMap),
    ("from", Obj(FROM)),
    ("reference", Any),
    ("generation", Int),
    ("importPolicy", Any),
    ("referencePolicy", Any),
];
static STREAM_SPEC: &[(&str, Shape)] = &[
    ("lookupPolicy", Any),
    ("dockerImageRepository", Str),
    ("tags", List(&Obj(TAG_REF))),
];
pub static STREAM: &[(&str, Shape)] = &[
    ("apiVersion", Str),
    ("kind", Str),
    ("metadata", Obj(META)),
    ("spec", Obj(STREAM_SPEC)),
    ("status", Any),
];

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => "null",
    }
}

/// Decode `value` like `json.Unmarshal` into the typed struct: `null` means absent, unknown keys
/// are removed and reported in `unknown`, and a type mismatch is the decode error text.
pub fn decode(
    value: &mut Value,
    shape: &Shape,
    path: &str,
    unknown: &mut Vec<String>,
) -> Result<(), String> {
    let mismatch = |v: &Value, go: &str| {
        Err(format!(
            "json: cannot unmarshal {} into Go struct field {path} of type {go}",
            json_type(v)
        ))
    };
    match shape {
        Any => Ok(()),
        Str if value.is_string() => Ok(()),
        Str => mismatch(value, "string"),
        Int if value.is_i64() || value.is_u64() => Ok(()),
        Int => mismatch(value, "int64"),
        StrMap => match value.as_object() {
            Some(m) if m.values().all(|v| v.is_string() || v.is_null()) => Ok(()),
            _ => mismatch(value, "map[string]string"),
        },
        StrList => match value.as_array() {
            Some(a) if a.iter().all(Value::is_string) => Ok(()),
            _ => mismatch(value, "[]string"),
        },
        List(item) => {
            let Some(items) = value.as_array_mut() else {
                return mismatch(value, "[]object");
            };
            for (i, v) in items.iter_mut().enumerate() {
                decode(v, item, &format!("{path}[{i}]"), unknown)?;
            }
            Ok(())
        }
        Obj(fields) => {
            let Some(map) = value.as_object_mut() else {
                return mismatch(value, "object");
            };
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match fields.iter().find(|(k, _)| *k == key) {
                    None => {
                        map.remove(&key);
                        unknown.push(child);
                    }
                    Some(_) if map.get(&key).is_some_and(Value::is_null) => {
                        map.remove(&key);
                    }
                    Some((_, s)) => {
                        if let Some(v) = map.get_mut(&key) {
                            decode(v, s, &child, unknown)?;
                        }
                    }
                }
            }
            Ok(())
        }
    }
}
