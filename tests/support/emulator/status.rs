//! `metav1.Status` bodies as the Kubernetes apiserver machinery builds them (`apimachinery/pkg/api/errors`),
//! and field errors as `util/validation/field` renders them into `details.causes`.
//! Only shapes live here; deciding *which* error applies is the caller's job.

use serde_json::{Map, Value, json};

pub const GROUP: &str = "image.openshift.io";

/// An HTTP answer: status code, JSON body, and `Warning`/`Retry-After` style extra headers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn new(code: u16, body: Value) -> Reply {
        Reply {
            code,
            body,
            headers: Vec::new(),
        }
    }
}

/// The body of a failed request: `{"kind":"Status",…,"status":"Failure"}`. Empty details are omitted.
pub fn failure(code: u16, reason: &str, message: &str, details: Value) -> Reply {
    let mut body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason,
    });
    if details.as_object().is_some_and(|d| !d.is_empty()) {
        body["details"] = details;
    }
    body["code"] = json!(code);
    Reply::new(code, body)
}

/// `&metav1.Status{Status: Success}` after the create handler set `Code = 201`.
pub fn created_success() -> Reply {
    Reply::new(
        201,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

/// `details` of a resource error: name/group/kind, each left out when empty (Go `omitempty`).
fn details(name: &str, group: &str, kind: &str) -> Value {
    let mut d = Map::new();
    if !name.is_empty() {
        d.insert("name".into(), json!(name));
    }
    if !group.is_empty() {
        d.insert("group".into(), json!(group));
    }
    if !kind.is_empty() {
        d.insert("kind".into(), json!(kind));
    }
    Value::Object(d)
}

/// `resource.group` as `schema.GroupResource.String()` prints it.
fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

pub fn not_found(group: &str, resource: &str, name: &str) -> Reply {
    let message = format!("{} {name:?} not found", qualified(group, resource));
    failure(404, "NotFound", &message, details(name, group, resource))
}

pub fn already_exists(group: &str, resource: &str, name: &str) -> Reply {
    let message = format!("{} {name:?} already exists", qualified(group, resource));
    failure(
        409,
        "AlreadyExists",
        &message,
        details(name, group, resource),
    )
}

pub fn bad_request(message: &str) -> Reply {
    failure(400, "BadRequest", message, json!({}))
}

/// The authentication filter's answer to a bad bearer token: no details, message "Unauthorized".
pub fn unauthorized() -> Reply {
    failure(401, "Unauthorized", "Unauthorized", json!({}))
}

/// `responsewriters.ForbiddenStatusError` for a resource request (name empty on create).
pub fn forbidden(
    user: &str,
    verb: &str,
    resource: &str,
    namespace: Option<&str>,
    name: &str,
) -> Reply {
    let scope = match namespace {
        Some(ns) => format!("in the namespace {ns:?}"),
        None => "at the cluster scope".to_string(),
    };
    let why =
        format!("User {user:?} cannot {verb} resource {resource:?} in API group {GROUP:?} {scope}");
    let message = if name.is_empty() {
        format!("{} is forbidden: {why}", qualified(GROUP, resource))
    } else {
        format!(
            "{} {name:?} is forbidden: {why}",
            qualified(GROUP, resource)
        )
    };
    failure(403, "Forbidden", &message, details(name, GROUP, resource))
}

/// The same filter for a non-resource path (discovery) when the user has no `system:discovery`.
pub fn forbidden_path(user: &str, path: &str) -> Reply {
    let message = format!("forbidden: User {user:?} cannot get path {path:?}");
    failure(403, "Forbidden", &message, json!({}))
}

pub fn not_found_path() -> Reply {
    failure(
        404,
        "NotFound",
        "the server could not find the requested resource",
        json!({}),
    )
}

pub fn method_not_allowed() -> Reply {
    failure(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
        json!({}),
    )
}

/// One `field.Error`, rendered like `(*field.Error).ErrorBody()`.
#[derive(Debug, Clone)]
pub struct FieldError {
    pub field: String,
    pub reason: &'static str,
    pub body: String,
}

/// A printed `Invalid value:`; strings quoted like Go `%q`, anything else as compact JSON.
fn show(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn with_detail(head: String, detail: &str) -> String {
    if detail.is_empty() {
        head
    } else {
        format!("{head}: {detail}")
    }
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: &str) -> FieldError {
        FieldError {
            field: field.into(),
            reason: "FieldValueRequired",
            body: with_detail("Required value".into(), detail),
        }
    }

    pub fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> FieldError {
        FieldError {
            field: field.into(),
            reason: "FieldValueInvalid",
            body: with_detail(format!("Invalid value: {}", show(value)), detail),
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: &str) -> FieldError {
        FieldError {
            field: field.into(),
            reason: "FieldValueForbidden",
            body: with_detail("Forbidden".into(), detail),
        }
    }

    pub fn not_supported(
        field: impl Into<String>,
        value: &Value,
        supported: &[&str],
    ) -> FieldError {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        FieldError {
            field: field.into(),
            reason: "FieldValueNotSupported",
            body: format!(
                "Unsupported value: {}: supported values: {}",
                show(value),
                list.join(", ")
            ),
        }
    }

    /// `field.Error.Error()`: "<field>: <body>".
    fn line(&self) -> String {
        format!("{}: {}", self.field, self.body)
    }
}

/// `errors.NewInvalid(qualifiedKind, name, errs)`: 422 with one cause per field error.
pub fn invalid(group: &str, kind: &str, name: &str, errs: &[FieldError]) -> Reply {
    let kind_q = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    let lines: Vec<String> = errs.iter().map(FieldError::line).collect();
    let aggregate = if lines.len() == 1 {
        lines[0].clone()
    } else {
        format!("[{}]", lines.join(", "))
    };
    let message = format!("{kind_q} {name:?} is invalid: {aggregate}");
    let causes: Vec<Value> = errs
        .iter()
        .map(|e| json!({"reason": e.reason, "message": e.body, "field": e.field}))
        .collect();
    let mut d = details(name, group, kind);
    d["causes"] = Value::Array(causes);
    failure(422, "Invalid", &message, d)
}

/// The answer of an injected status fault, shaped like what the apiserver or its front proxy sends.
pub fn for_code(code: u16) -> Reply {
    let (reason, message) = match code {
        429 => (
            "TooManyRequests",
            "Too many requests, please try again later.",
        ),
        500 => ("InternalError", "Internal error occurred: injected fault"),
        502 | 503 => (
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        ),
        504 => (
            "Timeout",
            "the server was unable to return a response in the time allotted",
        ),
        409 => (
            "Conflict",
            "Operation cannot be fulfilled: the object has been modified",
        ),
        401 => ("Unauthorized", "Unauthorized"),
        403 => ("Forbidden", "forbidden"),
        404 => (
            "NotFound",
            "the server could not find the requested resource",
        ),
        422 => {
            return failure(
                code,
                "Invalid",
                "ImageStreamMapping.image.openshift.io \"app\" is invalid: image.dockerImageReference: \
                 Forbidden: registry \"example.com\" not allowed by whitelist",
                json!({"name": "app", "group": GROUP, "kind": "ImageStreamMapping", "causes": [{
                    "reason": "FieldValueForbidden",
                    "message": "Forbidden: registry \"example.com\" not allowed by whitelist",
                    "field": "image.dockerImageReference"}]}),
            );
        }
        _ => ("", "injected fault"),
    };
    failure(code, reason, message, json!({}))
}
