//! ImageStreams in their v1 wire form (`spec.tags` and `status.tags` are lists keyed by name):
//! the create-time preparation, `AddTagEventToImageStream`, `UpdateTrackingTags`, and the reference
//! checks of `ValidateImageStreamStatusUpdateWithWhitelister` that guard every status write.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::reference;
use super::status::FieldError;
use super::validate::s;

/// The imagestream strategy's `PrepareForCreate` plus system fields: generation 1, status reset to
/// the internal repository, spec tags stamped with the generation and the default reference policy.
pub fn prepare_new(
    input: &Value,
    ns: &str,
    name: &str,
    internal: Option<&str>,
    system: &Map<String, Value>,
) -> Value {
    let mut meta = input
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for drop in [
        "generateName",
        "selfLink",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
    ] {
        meta.remove(drop);
    }
    meta.insert("name".into(), json!(name));
    meta.insert("namespace".into(), json!(ns));
    meta.insert("generation".into(), json!(1));
    meta.extend(system.clone());
    let mut spec = input
        .get("spec")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    spec.entry("lookupPolicy")
        .or_insert_with(|| json!({"local": false}));
    if let Some(tags) = spec.get_mut("tags").and_then(Value::as_array_mut) {
        for tag in tags.iter_mut().filter_map(Value::as_object_mut) {
            tag.insert("generation".into(), json!(1));
            let policy = tag.entry("referencePolicy").or_insert_with(|| json!({}));
            if s(policy, "type").is_empty() {
                policy["type"] = json!("Source");
            }
            tag.entry("importPolicy")
                .or_insert_with(|| json!({"importMode": "Legacy"}));
        }
    }
    let repo = internal
        .map(|h| format!("{h}/{ns}/{name}"))
        .unwrap_or_default();
    json!({
        "kind": "ImageStream", "apiVersion": "image.openshift.io/v1",
        "metadata": meta, "spec": spec, "status": {"dockerImageRepository": repo},
    })
}

/// `status.tags[tag]` (the list entry), created in name order when absent.
fn tag_entry<'a>(stream: &'a mut Value, tag: &str) -> &'a mut Map<String, Value> {
    if !stream["status"].is_object() {
        stream["status"] = json!({});
    }
    if !stream["status"]["tags"].is_array() {
        stream["status"]["tags"] = json!([]);
    }
    let tags = stream["status"]["tags"]
        .as_array_mut()
        .expect("tags is an array");
    let pos = match tags.iter().position(|t| s(t, "tag") == tag) {
        Some(p) => p,
        None => {
            let at = tags
                .iter()
                .position(|t| s(t, "tag") > tag)
                .unwrap_or(tags.len());
            tags.insert(at, json!({"tag": tag, "items": []}));
            at
        }
    };
    tags[pos].as_object_mut().expect("tag entry is an object")
}

/// The items of `status.tags[tag]`, newest first; empty when the tag has none.
pub fn events(stream: &Value, tag: &str) -> Vec<Value> {
    stream
        .pointer("/status/tags")
        .and_then(Value::as_array)
        .and_then(|tags| tags.iter().find(|t| s(t, "tag") == tag))
        .and_then(|t| t.get("items"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// `AddTagEventToImageStream`: true when the stream changed.
pub fn add_tag_event(stream: &mut Value, tag: &str, next: &Value) -> bool {
    let entry = tag_entry(stream, tag);
    let items = entry.entry("items").or_insert_with(|| json!([]));
    if !items.is_array() {
        *items = json!([]);
    }
    let list = items.as_array_mut().expect("items is an array");
    let Some(previous) = list.first_mut() else {
        list.push(next.clone());
        return true;
    };
    let same_ref = s(previous, "dockerImageReference") == s(next, "dockerImageReference");
    let same_image = s(previous, "image") == s(next, "image");
    let same_gen = previous.get("generation") == next.get("generation");
    match (same_ref, same_image) {
        (true, true) if same_gen => return false,
        (true, true) => {}
        (true, false) => previous["image"] = next["image"].clone(),
        (false, true) => previous["dockerImageReference"] = next["dockerImageReference"].clone(),
        (false, false) => {
            list.insert(0, next.clone());
            entry.remove("conditions");
            return true;
        }
    }
    previous["generation"] = next["generation"].clone();
    entry.remove("conditions");
    true
}

/// `UpdateTrackingTags`: spec tags whose `from` is `ImageStreamTag` `<tag>` or `<stream>:<tag>` in
/// this namespace get the same event. Returns how many changed.
pub fn update_tracking_tags(stream: &mut Value, tag: &str, next: &Value) -> usize {
    let ns = stream
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let name = stream
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let spec_tags = stream
        .pointer("/spec/tags")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut updated = 0;
    for spec_tag in spec_tags {
        let Some(from) = spec_tag.get("from") else {
            continue;
        };
        if s(from, "kind") != "ImageStreamTag" {
            continue;
        }
        let from_ns = if s(from, "namespace").is_empty() {
            ns.as_str()
        } else {
            s(from, "namespace")
        };
        if from_ns != ns {
            continue;
        }
        let from_name = s(from, "name");
        let (ref_stream, ref_tag) = match from_name.split_once(':') {
            Some((st, tg)) if !st.is_empty() && !tg.is_empty() && !tg.contains(':') => (st, tg),
            Some(_) => continue,
            None => (name.as_str(), from_name),
        };
        if ref_stream != name || ref_tag != tag {
            continue;
        }
        if add_tag_event(stream, s(&spec_tag, "name"), next) {
            updated += 1;
        }
    }
    updated
}

fn status_refs(stream: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for t in stream
        .pointer("/status/tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for (i, item) in t
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let path = format!(
                "status.tags[{}].items[{i}].dockerImageReference",
                s(t, "tag")
            );
            out.push((s(item, "dockerImageReference").to_string(), path));
        }
    }
    out
}

/// `ValidateImageStreamStatusUpdateWithWhitelister`: every status reference that is new in this
/// write must parse and, with a whitelist configured, be admitted by it.
pub fn validate_status_update(
    old: &Value,
    new: &Value,
    allowed: Option<&[String]>,
    internal: Option<&str>,
) -> Vec<FieldError> {
    let old_refs: BTreeSet<String> = status_refs(old).into_iter().map(|(r, _)| r).collect();
    let mut errs = Vec::new();
    for (r, path) in status_refs(new) {
        if old_refs.contains(&r) {
            continue;
        }
        match reference::parse(&r) {
            Err(e) => errs.push(FieldError::invalid(path, &Value::from(r.as_str()), &e)),
            Ok(parsed) => {
                let admitted = allowed.map(|list| reference::admit(&parsed, list, internal));
                if let Some(Err(e)) = admitted {
                    errs.push(FieldError::forbidden(path, &e));
                }
            }
        }
    }
    errs
}

/// The pull spec of the stream (`status.dockerImageRepository`, else `spec.dockerImageRepository`)
/// with `id` as its ID: the reference a managed image's tag event is rewritten to.
pub fn local_reference(stream: &Value, id: &str) -> Option<String> {
    let status = stream
        .pointer("/status/dockerImageRepository")
        .and_then(Value::as_str)
        .unwrap_or("");
    let spec = stream
        .pointer("/spec/dockerImageRepository")
        .and_then(Value::as_str)
        .unwrap_or("");
    let repo = if status.is_empty() { spec } else { status };
    if repo.is_empty() {
        return None;
    }
    let mut r = reference::parse(repo).ok()?;
    r.id = id.to_string();
    Some(r.exact())
}
