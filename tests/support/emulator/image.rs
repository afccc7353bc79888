//! The images store's `PrepareForCreate`: `InternalImageWithMetadata` (layer reordering, the short
//! circuit, metadata from manifest + config, the size rule), `dockerImageManifests` for lists, the
//! `manifestBlobStored` clearing, and the v1 wire form the server answers with (`dockerImageMetadata`
//! re-encoded as `image.openshift.io/1.0` `DockerImage`, times in RFC 3339 seconds).

use std::collections::HashSet;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::validate::s;

pub const LAYERS_ORDER: &str = "image.openshift.io/dockerLayersOrder";
pub const MANAGED: &str = "openshift.io/image.managed";
const BLOB_STORED: &str = "image.openshift.io/manifestBlobStored";
const SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
const SCHEMA1_LAYER: &str = "application/vnd.docker.container.image.rootfs.diff+x-gtar";
const SCHEMA2: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// `metav1.Now()` as it goes on the wire.
pub fn now() -> String {
    format_time(OffsetDateTime::now_utc())
}

fn format_time(t: OffsetDateTime) -> String {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

/// A client time re-encoded by `metav1.Time`: UTC, whole seconds. Unparseable input is kept.
fn normalize_time(v: &Value) -> Value {
    match v.as_str().map(|t| OffsetDateTime::parse(t, &Rfc3339)) {
        Some(Ok(t)) => Value::from(format_time(t)),
        _ => v.clone(),
    }
}

fn annotations(img: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let meta = img.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    let ann = &mut meta["annotations"];
    if !ann.is_object() {
        *ann = json!({});
    }
    ann.as_object_mut().expect("annotations is an object")
}

fn annotation<'a>(img: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    img.get("metadata")?.get("annotations")?.get(key)?.as_str()
}

fn layers(img: &Map<String, Value>) -> Vec<Value> {
    img.get("dockerImageLayers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// `reorderImageLayers`: without the order annotation, schema2/OCI layers are taken as descending.
fn reorder_layers(img: &mut Map<String, Value>) {
    let mut list = layers(img);
    if list.is_empty() {
        return;
    }
    let media = img
        .get("dockerImageManifestMediaType")
        .and_then(Value::as_str)
        .unwrap_or("");
    let order = match annotation(img, LAYERS_ORDER) {
        Some(o) => o.to_string(),
        None => match media {
            SCHEMA1 | SCHEMA1_SIGNED => "ascending".to_string(),
            SCHEMA2 | OCI_MANIFEST => "descending".to_string(),
            _ => return,
        },
    };
    if order == "descending" {
        list.reverse();
        img.insert("dockerImageLayers".into(), Value::Array(list));
    }
    annotations(img).insert(LAYERS_ORDER.into(), json!("ascending"));
}

/// `fillImageLayers`: only when the client sent none.
fn fill_layers(img: &mut Map<String, Value>, manifest: &Value) -> Result<(), String> {
    if !layers(img).is_empty() {
        return Ok(());
    }
    let filled: Vec<Value> = match manifest.get("schemaVersion").and_then(Value::as_i64) {
        Some(1) => {
            let history = manifest.get("history").and_then(Value::as_array).cloned().unwrap_or_default();
            let fs = manifest.get("fsLayers").and_then(Value::as_array).cloned().unwrap_or_default();
            if history.len() != fs.len() {
                return Err("mismatched history and fslayer cardinality".into());
            }
            let mut out: Vec<Value> = fs
                .iter()
                .zip(&history)
                .map(|(l, h)| {
                    let size = serde_json::from_str::<Value>(s(h, "v1Compatibility"))
                        .ok()
                        .and_then(|c| c.get("Size").and_then(Value::as_i64))
                        .unwrap_or(0);
                    json!({"name": s(l, "blobSum"), "size": size, "mediaType": SCHEMA1_LAYER})
                })
                .collect();
            out.reverse();
            out
        }
        Some(2) => manifest
            .get("layers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|l| json!({"name": s(l, "digest"), "size": l.get("size").and_then(Value::as_i64).unwrap_or(0), "mediaType": s(l, "mediaType")}))
            .collect(),
        other => return Err(format!("unrecognized container image manifest schema {other:?}")),
    };
    img.insert("dockerImageLayers".into(), Value::Array(filled));
    annotations(img).insert(LAYERS_ORDER.into(), json!("ascending"));
    Ok(())
}

/// docker10 `DockerImageConfig` (config blob, snake_case) → `DockerImage` (metadata, CamelCase).
fn metadata_from_config(config: &Value) -> Map<String, Value> {
    let mut m = Map::new();
    for (from, to) in [
        ("parent", "Parent"),
        ("comment", "Comment"),
        ("created", "Created"),
        ("container", "Container"),
        ("container_config", "ContainerConfig"),
        ("docker_version", "DockerVersion"),
        ("author", "Author"),
        ("config", "Config"),
        ("architecture", "Architecture"),
    ] {
        if let Some(v) = config.get(from) {
            m.insert(to.into(), v.clone());
        }
    }
    m
}

/// `InternalImageWithMetadata`. Errors are only logged upstream (the image is stored anyway).
fn with_metadata(img: &mut Map<String, Value>, now: &str) -> Result<(), String> {
    let raw = img
        .get("dockerImageManifest")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if raw.is_empty() {
        return Ok(());
    }
    reorder_layers(img);
    let size = img
        .get("dockerImageMetadata")
        .and_then(|m| m.get("Size"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let media = img
        .get("dockerImageManifestMediaType")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !layers(img).is_empty() && size > 0 && !media.is_empty() {
        return Ok(());
    }
    let manifest: Value = serde_json::from_str(&raw).map_err(|e| e.to_string())?;
    let manifest_media = s(&manifest, "mediaType").to_string();
    let mut meta = img
        .get("dockerImageMetadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if manifest_media == DOCKER_LIST || manifest_media == OCI_INDEX {
        let name = img
            .get("metadata")
            .map(|m| s(m, "name").to_string())
            .unwrap_or_default();
        meta.insert("Id".into(), json!(name));
        meta.insert("Created".into(), json!(now));
        img.insert("dockerImageMetadata".into(), Value::Object(meta));
        return Ok(());
    }
    fill_layers(img, &manifest)?;
    let schema = manifest.get("schemaVersion").and_then(Value::as_i64);
    let config_raw = img
        .get("dockerImageConfig")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    match schema {
        Some(1) => {
            img.insert("dockerImageManifestMediaType".into(), json!(SCHEMA1));
            let first = manifest
                .pointer("/history/0/v1Compatibility")
                .and_then(Value::as_str);
            let compat: Value =
                serde_json::from_str(first.ok_or("schema 1 manifest without history")?)
                    .map_err(|e| e.to_string())?;
            meta = metadata_from_config(&compat);
            meta.insert("Id".into(), json!(s(&compat, "id")));
        }
        Some(2) => {
            if !manifest_media.is_empty() {
                img.insert("dockerImageManifestMediaType".into(), json!(manifest_media));
            } else if media.is_empty() {
                img.insert("dockerImageManifestMediaType".into(), json!(SCHEMA2));
            }
            if config_raw.is_empty() {
                return Err("dockerImageConfig must not be empty".into());
            }
            let config: Value = serde_json::from_str(&config_raw).map_err(|e| e.to_string())?;
            meta = metadata_from_config(&config);
            meta.insert(
                "Id".into(),
                json!(manifest.pointer("/config/digest").and_then(Value::as_str)),
            );
        }
        other => {
            return Err(format!(
                "unrecognized container image manifest schema {other:?}"
            ));
        }
    }
    let mut seen: HashSet<String> = HashSet::new();
    let mut total = 0i64;
    if schema == Some(2) {
        seen.insert(
            manifest
                .pointer("/config/digest")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        );
        total = i64::try_from(config_raw.len()).unwrap_or(i64::MAX);
    }
    for layer in layers(img) {
        if seen.insert(s(&layer, "name").to_string()) {
            total += layer.get("size").and_then(Value::as_i64).unwrap_or(0);
        }
    }
    meta.insert("Size".into(), json!(total));
    img.insert("dockerImageMetadata".into(), Value::Object(meta));
    Ok(())
}

/// `dockerImageManifests` from a list's entries (`distribution.UnmarshalManifest` + platforms).
fn sub_manifests(list: &Value) -> Vec<Value> {
    let entries = list.get("manifests").and_then(Value::as_array);
    let platform = |m: &Value, key: &str| {
        let v = m
            .pointer(&format!("/platform/{key}"))
            .and_then(Value::as_str);
        v.unwrap_or("").to_string()
    };
    let mut out = Vec::new();
    for m in entries.into_iter().flatten() {
        let mut e = json!({
            "digest": s(m, "digest"), "mediaType": s(m, "mediaType"),
            "manifestSize": m.get("size").and_then(Value::as_i64).unwrap_or(0),
            "architecture": platform(m, "architecture"), "os": platform(m, "os"),
        });
        let variant = platform(m, "variant");
        if !variant.is_empty() {
            e["variant"] = json!(variant);
        }
        out.push(e);
    }
    out
}

/// The images strategy `PrepareForCreate` on an already decoded v1 image.
pub fn prepare_for_create(img: &mut Map<String, Value>, now: &str) {
    // Upstream logs and ignores a failure here; the image is stored with what it has.
    let _ignored = with_metadata(img, now);
    let media = img
        .get("dockerImageManifestMediaType")
        .and_then(Value::as_str)
        .unwrap_or("");
    let raw = img
        .get("dockerImageManifest")
        .and_then(Value::as_str)
        .unwrap_or("");
    let is_list = media == DOCKER_LIST || media == OCI_INDEX;
    if let Some(list) = is_list
        .then(|| serde_json::from_str::<Value>(raw).ok())
        .flatten()
    {
        img.insert(
            "dockerImageManifests".into(),
            Value::Array(sub_manifests(&list)),
        );
    }
    if annotation(img, BLOB_STORED) == Some("true") {
        img.remove("dockerImageManifest");
        img.remove("dockerImageConfig");
    }
}

/// Find a key like Go's `encoding/json` does: exact match first, then case-insensitive.
fn go_field<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.get(key).or_else(|| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// `dockerImageMetadata` as the v1 conversion encodes the internal `DockerImage` (always present).
pub fn wire_metadata(raw: Option<&Value>) -> Value {
    let empty = Map::new();
    let m = raw.and_then(Value::as_object).unwrap_or(&empty);
    let mut out = Map::new();
    out.insert("kind".into(), json!("DockerImage"));
    out.insert("apiVersion".into(), json!("image.openshift.io/1.0"));
    out.insert(
        "Id".into(),
        go_field(m, "Id")
            .cloned()
            .filter(Value::is_string)
            .unwrap_or(json!("")),
    );
    for key in ["Parent", "Comment"] {
        if let Some(v) = go_field(m, key)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
        {
            out.insert(key.into(), json!(v));
        }
    }
    out.insert(
        "Created".into(),
        go_field(m, "Created").map_or(Value::Null, normalize_time),
    );
    if let Some(v) = go_field(m, "Container")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
    {
        out.insert("Container".into(), json!(v));
    }
    let cc = go_field(m, "ContainerConfig")
        .filter(|v| v.is_object())
        .cloned()
        .unwrap_or(json!({}));
    out.insert("ContainerConfig".into(), cc);
    for key in ["DockerVersion", "Author"] {
        if let Some(v) = go_field(m, key)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
        {
            out.insert(key.into(), json!(v));
        }
    }
    if let Some(v) = go_field(m, "Config").filter(|v| v.is_object()) {
        out.insert("Config".into(), v.clone());
    }
    if let Some(v) = go_field(m, "Architecture")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
    {
        out.insert("Architecture".into(), json!(v));
    }
    if let Some(v) = go_field(m, "Size")
        .and_then(Value::as_i64)
        .filter(|v| *v != 0)
    {
        out.insert("Size".into(), json!(v));
    }
    Value::Object(out)
}
