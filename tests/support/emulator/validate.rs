//! The openshift-apiserver validation functions (`ValidateImageStreamMapping`, `validateImage`,
//! `ValidateImageStream`) that produce 422 causes, run on already decoded objects (see `decode.rs`).
//! Field paths and messages follow `k8s.io/apimachinery/pkg/util/validation/field`.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use super::reference;
use super::status::FieldError;

/// A string field of an object, "" when absent (Go zero value).
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
static QUALIFIED_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("^{QUALIFIED_NAME_FMT}$")).expect("regex"));
static DNS1123_SUBDOMAIN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("^{DNS1123_SUBDOMAIN_FMT}$")).expect("regex"));
static STREAM_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^[a-z0-9]+(?:[._-][a-z0-9]+)*$").expect("regex"));
static MANIFEST_DIGEST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new("[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}")
        .expect("regex")
});
static MEDIA_TYPE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^ *([A-Za-z0-9][A-Za-z0-9!#$&^_-]{0,126})/([A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}) *$",
    )
    .expect("regex")
});

/// `path.ValidatePathSegmentName`.
pub fn path_segment_name(name: &str, prefix: bool) -> Vec<String> {
    let mut out = Vec::new();
    if !prefix {
        for bad in [".", ".."] {
            if name == bad {
                out.push(format!("may not be '{bad}'"));
            }
        }
    }
    for bad in ["/", "%"] {
        if name.contains(bad) {
            out.push(format!("may not contain '{bad}'"));
        }
    }
    out
}

/// `ValidateImageStreamName`: a path segment, then the repository-name component regex.
pub fn stream_name(name: &str, prefix: bool) -> Vec<String> {
    let reasons = path_segment_name(name, prefix);
    if !reasons.is_empty() {
        return reasons;
    }
    if !STREAM_NAME.is_match(name) {
        return vec![format!("must match {:?}", "[a-z0-9]+(?:[._-][a-z0-9]+)*")];
    }
    Vec::new()
}

/// `validation.IsQualifiedName` (annotation and label keys).
fn qualified_name(value: &str) -> Vec<String> {
    let name_msg = format!(
        "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an \
         alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '{QUALIFIED_NAME_FMT}')"
    );
    let parts: Vec<&str> = value.split('/').collect();
    let (prefix, name) = match parts.as_slice() {
        [name] => (None, *name),
        [prefix, name] => (Some(*prefix), *name),
        _ => {
            return vec![format!(
                "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end \
                 with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for \
                 validation is '{QUALIFIED_NAME_FMT}') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    let mut out = Vec::new();
    if let Some(p) = prefix {
        if p.is_empty() {
            out.push("prefix part must be non-empty".to_string());
        } else if p.len() > 253 || !DNS1123_SUBDOMAIN.is_match(p) {
            out.push(format!(
                "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' \
                 or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for \
                 validation is '{DNS1123_SUBDOMAIN_FMT}')"
            ));
        }
    }
    if name.is_empty() {
        out.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        out.push("name part must be no more than 63 characters".to_string());
    }
    if !name.is_empty() && !QUALIFIED_NAME.is_match(name) {
        out.push(name_msg);
    }
    out
}

/// `ValidateObjectMeta` (the parts a client can get wrong here): name/generateName via `name_fn`,
/// namespace required or forbidden, annotation and label keys.
pub fn object_meta(
    meta: &Value,
    requires_namespace: bool,
    name_fn: fn(&str, bool) -> Vec<String>,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let (name, generate_name, namespace) = (
        s(meta, "name"),
        s(meta, "generateName"),
        s(meta, "namespace"),
    );
    if !generate_name.is_empty() {
        for msg in name_fn(generate_name, true) {
            errs.push(FieldError::invalid(
                format!("{path}.generateName"),
                &Value::from(generate_name),
                &msg,
            ));
        }
    }
    if name.is_empty() {
        errs.push(FieldError::required(
            format!("{path}.name"),
            "name or generateName is required",
        ));
    } else {
        for msg in name_fn(name, false) {
            errs.push(FieldError::invalid(
                format!("{path}.name"),
                &Value::from(name),
                &msg,
            ));
        }
    }
    if requires_namespace && namespace.is_empty() {
        errs.push(FieldError::required(format!("{path}.namespace"), ""));
    } else if !requires_namespace && !namespace.is_empty() {
        errs.push(FieldError::forbidden(
            format!("{path}.namespace"),
            "not allowed on this type",
        ));
    }
    for (field, is_labels) in [("annotations", false), ("labels", true)] {
        let Some(map) = meta.get(field).and_then(Value::as_object) else {
            continue;
        };
        for key in map.keys() {
            let checked = if is_labels {
                key.clone()
            } else {
                key.to_lowercase()
            };
            for msg in qualified_name(&checked) {
                errs.push(FieldError::invalid(
                    format!("{path}.{field}"),
                    &Value::from(key.as_str()),
                    &msg,
                ));
            }
        }
    }
    errs
}

/// `validateImage(image, fldPath)`.
pub fn image(img: &Value, path: &str) -> Vec<FieldError> {
    let p = |child: &str| {
        if path.is_empty() {
            child.to_string()
        } else {
            format!("{path}.{child}")
        }
    };
    let empty = Value::Object(Map::new());
    let mut errs = object_meta(
        img.get("metadata").unwrap_or(&empty),
        false,
        path_segment_name,
        &p("metadata"),
    );
    let reference = s(img, "dockerImageReference");
    if reference.is_empty() {
        errs.push(FieldError::required(p("dockerImageReference"), ""));
    } else if let Err(e) = reference::parse(reference) {
        errs.push(FieldError::invalid(
            p("dockerImageReference"),
            &Value::from(reference),
            &e,
        ));
    }
    let manifests = img
        .get("dockerImageManifests")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !manifests.is_empty() {
        for (i, m) in manifests.iter().enumerate() {
            let at = |c: &str| format!("{}[{i}].{c}", p("dockerImageManifests"));
            if !MANIFEST_DIGEST.is_match(s(m, "digest")) {
                let msg = "digest does not conform with OCI image specification";
                errs.push(FieldError::invalid(
                    at("digest"),
                    &Value::from(s(m, "digest")),
                    msg,
                ));
            }
            if !MEDIA_TYPE.is_match(s(m, "mediaType")) {
                let msg = "media type does not conform to RFC6838";
                errs.push(FieldError::invalid(
                    at("mediaType"),
                    &Value::from(s(m, "mediaType")),
                    msg,
                ));
            }
            if s(m, "architecture").is_empty() {
                errs.push(FieldError::required(at("architecture"), ""));
            }
            if s(m, "os").is_empty() {
                errs.push(FieldError::required(at("os"), ""));
            }
            let size = m.get("manifestSize").and_then(Value::as_i64).unwrap_or(0);
            if size < 0 {
                errs.push(FieldError::invalid(
                    at("size"),
                    &Value::from(size),
                    "manifest size cannot be negative",
                ));
            }
        }
        let layers = img
            .get("dockerImageLayers")
            .and_then(Value::as_array)
            .filter(|l| !l.is_empty());
        if let Some(layers) = layers {
            let msg = "dockerImageLayers should not be set when dockerImageManifests is set";
            errs.push(FieldError::invalid(
                p("dockerImageLayers"),
                &Value::Array(layers.clone()),
                msg,
            ));
        }
    }
    errs
}

/// `ValidateImageStreamMapping` (v1 has no `dockerImageRepository`, so an empty name is two errors).
pub fn mapping(ism: &Value) -> Vec<FieldError> {
    let empty = Value::Object(Map::new());
    let meta = ism.get("metadata").unwrap_or(&empty);
    let mut errs = object_meta(meta, true, path_segment_name, "metadata");
    if s(meta, "name").is_empty() {
        errs.push(FieldError::required("name", ""));
        errs.push(FieldError::required("dockerImageRepository", ""));
    }
    if s(ism, "tag").is_empty() {
        errs.push(FieldError::required("tag", ""));
    }
    errs.extend(image(ism.get("image").unwrap_or(&empty), "image"));
    errs
}

/// `ValidateImageStreamWithWhitelister` for a create, without a whitelist (spec only; status is reset).
pub fn stream(is: &Value) -> Vec<FieldError> {
    let empty = Value::Object(Map::new());
    let meta = is.get("metadata").unwrap_or(&empty);
    let mut errs = object_meta(meta, true, stream_name, "metadata");
    let (ns, name) = (s(meta, "namespace"), s(meta, "name"));
    if ns.len() + 1 + name.len() > 255 {
        let msg = "'namespace/name' cannot be longer than 255 characters";
        errs.push(FieldError::invalid(
            "metadata.name",
            &Value::from(name),
            msg,
        ));
    }
    let spec = is.get("spec").unwrap_or(&empty);
    let repo = s(spec, "dockerImageRepository");
    if !repo.is_empty() {
        let path = "spec.dockerImageRepository";
        match reference::parse(repo) {
            Err(e) => errs.push(FieldError::invalid(path, &Value::from(repo), &e)),
            Ok(r) => {
                if !r.tag.is_empty() {
                    errs.push(FieldError::invalid(
                        path,
                        &Value::from(repo),
                        "the repository name may not contain a tag",
                    ));
                }
                if !r.id.is_empty() {
                    errs.push(FieldError::invalid(
                        path,
                        &Value::from(repo),
                        "the repository name may not contain an ID",
                    ));
                }
            }
        }
    }
    for tag in spec
        .get("tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let path = format!("spec.tags[{}]", s(tag, "name"));
        if let Some(from) = tag.get("from") {
            let from_name = s(from, "name");
            if from_name.is_empty() {
                errs.push(FieldError::required(format!("{path}.from.name"), ""));
            }
            match s(from, "kind") {
                "DockerImage" => {
                    if let (Err(e), false) = (reference::parse(from_name), from_name.is_empty()) {
                        errs.push(FieldError::invalid(
                            format!("{path}.from.name"),
                            &Value::from(from_name),
                            &e,
                        ));
                    }
                }
                "ImageStreamImage" | "ImageStreamTag" => {}
                _ => errs.push(FieldError::required(
                    format!("{path}.from.kind"),
                    "valid values are 'DockerImage', 'ImageStreamImage', 'ImageStreamTag'",
                )),
            }
        }
        let policy = tag
            .pointer("/referencePolicy/type")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !policy.is_empty() && policy != "Source" && policy != "Local" {
            let msg = "valid values are \"Source\", \"Local\"";
            errs.push(FieldError::invalid(
                format!("{path}.referencePolicy.type"),
                &Value::from(policy),
                msg,
            ));
        }
    }
    errs
}
