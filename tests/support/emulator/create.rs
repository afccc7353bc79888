//! The create handlers, following the generic create handler: options (`dryRun` values), body
//! decoding (400), namespace match (400), admission's namespace lifecycle check (404 `namespaces`),
//! then the storage's own `Create` — for ImageStreamMappings the pipeline of openshift-apiserver's
//! `imagestreammapping.REST.Create` (validate, find stream, create image, merge the tag event).

use serde_json::{Map, Value, json};

use super::decode::{self, Shape};
use super::image::{self, MANAGED};
use super::reference::DockerRef;
use super::routes::{API_VERSION, Request};
use super::status::{self, FieldError, GROUP, Reply};
use super::validate::{self, s};
use super::{State, stream};

/// The apiserver's request body limit (`MaxRequestBodyBytes`, 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// Extra response headers (`Warning` for dropped fields).
type Headers = Vec<(&'static str, String)>;

/// `CreateOptions` from the query: `dryRun` may only be `All`. Returns whether it is a dry run and
/// whether unknown fields are an error (`fieldValidation=Strict`).
fn create_options(query: &str) -> Result<(bool, bool), Reply> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let dry: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "dryRun")
        .map(|(_, v)| v.as_str())
        .collect();
    if dry.iter().any(|v| *v != "All") {
        let err = FieldError::not_supported("dryRun", &json!(dry), &["All"]);
        return Err(status::invalid("meta.k8s.io", "CreateOptions", "", &[err]));
    }
    let strict = pairs
        .iter()
        .any(|(k, v)| k == "fieldValidation" && v == "Strict");
    Ok((!dry.is_empty(), strict))
}

/// Decode a body into the typed object: 413/400 on failure, `Warning` headers for dropped fields.
fn decode_body(
    req: &Request,
    shape: &'static [(&'static str, Shape)],
    kind: &str,
    strict: bool,
) -> Result<(Value, Headers), Reply> {
    if req.body.len() > MAX_BODY {
        let msg = format!("Request entity too large: limit is {MAX_BODY}");
        return Err(status::failure(
            413,
            "RequestEntityTooLarge",
            &msg,
            json!({}),
        ));
    }
    let mut v: Value = serde_json::from_slice(&req.body).map_err(|e| {
        status::bad_request(&format!("couldn't get version/kind; json parse error: {e}"))
    })?;
    if !v.is_object() {
        return Err(status::bad_request(
            "couldn't get version/kind; json parse error: not an object",
        ));
    }
    let (api, k) = (s(&v, "apiVersion"), s(&v, "kind"));
    if (!k.is_empty() && k != kind) || (!api.is_empty() && api != API_VERSION) {
        let msg = format!(
            "the object provided is unrecognized (must be of type {kind}): {api}, Kind={k}"
        );
        return Err(status::bad_request(&msg));
    }
    let mut unknown = Vec::new();
    decode::decode(&mut v, &Shape::Obj(shape), "", &mut unknown).map_err(|e| {
        status::bad_request(&format!(
            "{kind} in version \"v1\" cannot be handled as a {kind}: {e}"
        ))
    })?;
    if strict && !unknown.is_empty() {
        let list: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field {f:?}"))
            .collect();
        return Err(status::bad_request(&format!(
            "strict decoding error: {}",
            list.join(", ")
        )));
    }
    let warnings = unknown
        .iter()
        .map(|f| ("Warning", format!("299 - \"unknown field \\\"{f}\\\"\"")))
        .collect();
    Ok((v, warnings))
}

fn with_headers(mut reply: Reply, headers: Headers) -> Reply {
    reply.headers.extend(headers);
    reply
}

fn obj<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !v[key].is_object() {
        v[key] = json!({});
    }
    v[key].as_object_mut().expect("just made an object")
}

/// `BeforeCreate` for a namespaced object: fill an empty namespace from the URL, refuse another one;
/// then admission's namespace lifecycle check; then `generateName`.
fn namespaced_before_create(st: &State, object: &mut Value, ns: &str) -> Result<String, Reply> {
    let meta = obj(object, "metadata");
    match meta.get("namespace").and_then(Value::as_str).unwrap_or("") {
        "" => {
            meta.insert("namespace".into(), json!(ns));
        }
        other if other != ns => {
            let msg = "the namespace of the provided object does not match the namespace sent on the request";
            return Err(status::bad_request(msg));
        }
        _ => {}
    }
    if !st.namespaces.contains(ns) {
        return Err(status::not_found("", "namespaces", ns));
    }
    Ok(generate_name(meta))
}

/// `names.SimpleNameGenerator`: `generateName` + 5 random characters when `name` is empty.
fn generate_name(meta: &mut Map<String, Value>) -> String {
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let prefix = meta
        .get("generateName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !name.is_empty() || prefix.is_empty() {
        return name;
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect();
    let generated = format!("{prefix}{suffix}");
    meta.insert("name".into(), json!(generated));
    generated
}

pub fn create_stream(st: &mut State, ns: &str, req: &Request) -> Reply {
    let (dry_run, strict) = match create_options(&req.query) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let (mut body, warnings) = match decode_body(req, decode::STREAM, "ImageStream", strict) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let name = match namespaced_before_create(st, &mut body, ns) {
        Ok(n) => n,
        Err(r) => return with_headers(r, warnings),
    };
    let mut stored = stream::prepare_new(
        &body,
        ns,
        &name,
        st.internal_registry.as_deref(),
        &Map::new(),
    );
    let errs = validate::stream(&stored);
    if !errs.is_empty() {
        return with_headers(
            status::invalid(GROUP, "ImageStream", &name, &errs),
            warnings,
        );
    }
    let key = (ns.to_string(), name.clone());
    if st.streams.contains_key(&key) {
        return with_headers(
            status::already_exists(GROUP, "imagestreams", &name),
            warnings,
        );
    }
    obj(&mut stored, "metadata").extend(st.system_fields());
    if !dry_run {
        st.streams.insert(key, stored.clone());
    }
    with_headers(Reply::new(201, stored), warnings)
}

pub fn create_image_request(st: &mut State, req: &Request) -> Reply {
    let (dry_run, strict) = match create_options(&req.query) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let (mut body, warnings) = match decode_body(req, decode::IMAGE, "Image", strict) {
        Ok(b) => b,
        Err(r) => return r,
    };
    // BeforeCreate clears the namespace of a cluster-scoped object.
    obj(&mut body, "metadata").remove("namespace");
    let reply = match create_image(st, body, dry_run) {
        Ok(stored) => Reply::new(201, stored),
        Err(ImageCreate::Exists(name)) => status::already_exists(GROUP, "images", &name),
        Err(ImageCreate::Failed(r)) => r,
    };
    with_headers(reply, warnings)
}

enum ImageCreate {
    Exists(String),
    Failed(Reply),
}

/// The images store's create: prepare (server-side metadata), validate (422), refuse an existing
/// name (409 — images are immutable, never updated), store.
fn create_image(st: &mut State, mut body: Value, dry_run: bool) -> Result<Value, ImageCreate> {
    let name = generate_name(obj(&mut body, "metadata"));
    let Value::Object(mut img) = body else {
        unreachable!("decode_body only accepts objects")
    };
    image::prepare_for_create(&mut img, &image::now());
    let errs = validate::image(&Value::Object(img.clone()), "");
    if !errs.is_empty() {
        return Err(ImageCreate::Failed(status::invalid(
            GROUP, "Image", &name, &errs,
        )));
    }
    if st.images.contains_key(&name) {
        return Err(ImageCreate::Exists(name));
    }
    let mut stored = wire_image(&img);
    obj(&mut stored, "metadata").extend(st.system_fields());
    if !dry_run {
        st.images.insert(name, stored.clone());
    }
    Ok(stored)
}

/// An Image as the v1 conversion writes it (Go `omitempty` where the v1 type has it).
fn wire_image(img: &Map<String, Value>) -> Value {
    let mut meta = img
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for drop in [
        "namespace",
        "generateName",
        "selfLink",
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "managedFields",
    ] {
        meta.remove(drop);
    }
    let mut out = json!({"kind": "Image", "apiVersion": API_VERSION, "metadata": meta});
    let text = |k: &str| img.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
    if let Some(v) = text("dockerImageReference") {
        out["dockerImageReference"] = json!(v);
    }
    out["dockerImageMetadata"] = image::wire_metadata(img.get("dockerImageMetadata"));
    out["dockerImageMetadataVersion"] = json!(text("dockerImageMetadataVersion").unwrap_or("1.0"));
    let layers: Vec<Value> = img
        .get("dockerImageLayers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|l| json!({"name": s(l, "name"), "size": l.get("size").and_then(Value::as_i64).unwrap_or(0), "mediaType": s(l, "mediaType")}))
        .collect();
    out["dockerImageLayers"] = if layers.is_empty() {
        Value::Null
    } else {
        Value::Array(layers)
    };
    for key in [
        "dockerImageManifestMediaType",
        "dockerImageManifest",
        "dockerImageConfig",
    ] {
        if let Some(v) = text(key) {
            out[key] = json!(v);
        }
    }
    for key in ["dockerImageManifests", "dockerImageSignatures"] {
        if let Some(v) = img
            .get(key)
            .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
        {
            out[key] = v.clone();
        }
    }
    out
}

/// `imagestreammapping.REST.Create`, reached after options, decoding and admission.
pub fn create_mapping(st: &mut State, ns: &str, req: &Request) -> Reply {
    // dryRun is validated by the generic handler but never read by this storage: it writes anyway.
    let strict = match create_options(&req.query) {
        Ok((_, strict)) => strict,
        Err(r) => return r,
    };
    let (mut ism, warnings) = match decode_body(req, decode::MAPPING, "ImageStreamMapping", strict)
    {
        Ok(b) => b,
        Err(r) => return r,
    };
    let reply = match create_mapping_decoded(st, ns, &mut ism) {
        Ok(()) => status::created_success(),
        Err(r) => r,
    };
    with_headers(reply, warnings)
}

fn create_mapping_decoded(st: &mut State, ns: &str, ism: &mut Value) -> Result<(), Reply> {
    let name = namespaced_before_create(st, ism, ns)?;
    // Strategy.PrepareForCreate: default an empty reference to the internal registry; drop signatures.
    let image_name = ism
        .pointer("/image/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let internal = st.internal_registry.clone();
    let img = obj(ism, "image");
    let missing = s(&Value::Object(img.clone()), "dockerImageReference").is_empty();
    {
        if let (true, Some(host)) = (missing, internal.as_deref()) {
            let r = DockerRef {
                registry: host.to_string(),
                namespace: ns.to_string(),
                name: name.clone(),
                tag: String::new(),
                id: image_name.clone(),
            };
            img.insert("dockerImageReference".into(), json!(r.exact()));
        }
    }
    img.remove("signatures");
    let errs = validate::mapping(ism);
    if !errs.is_empty() {
        return Err(status::invalid(GROUP, "ImageStreamMapping", &name, &errs));
    }
    let key = (ns.to_string(), name.clone());
    // findStreamForMapping: the 404 is qualified with the resource of the request.
    let Some(old) = st.streams.get(&key).cloned() else {
        return Err(status::not_found(GROUP, "imagestreammappings", &name));
    };
    let submitted = ism["image"].clone();
    let existed = match create_image(st, submitted.clone(), false) {
        Ok(_) => false,
        Err(ImageCreate::Exists(_)) => true,
        Err(ImageCreate::Failed(r)) => return Err(r),
    };
    let mut reference = s(&submitted, "dockerImageReference").to_string();
    let managed = submitted.pointer(&format!(
        "/metadata/annotations/{}",
        MANAGED.replace('/', "~1")
    ));
    let rewrite = existed && managed.and_then(Value::as_str) == Some("true");
    if let Some(local) = rewrite
        .then(|| stream::local_reference(&old, &image_name))
        .flatten()
    {
        reference = local;
    }
    let tag = s(ism, "tag").to_string();
    let generation = old
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let next = json!({"created": image::now(), "dockerImageReference": reference, "image": image_name, "generation": generation});
    let mut new = old.clone();
    if !stream::add_tag_event(&mut new, &tag, &next) {
        return Ok(());
    }
    stream::update_tracking_tags(&mut new, &tag, &next);
    let errs = stream::validate_status_update(
        &old,
        &new,
        st.allowed_registries.as_deref(),
        internal.as_deref(),
    );
    if !errs.is_empty() {
        return Err(status::invalid(GROUP, "ImageStream", &name, &errs));
    }
    let rv = st.next_rv();
    obj(&mut new, "metadata").insert("resourceVersion".into(), json!(rv));
    st.streams.insert(key, new);
    Ok(())
}
