//! Request handling in upstream's order: injected faults, authentication (401), the non-resource
//! discovery paths, RBAC authorization (403), then the resource handlers (reads here, creates in
//! `create.rs`). Nothing here changes stored objects.

use serde_json::{Value, json};

use super::create::{create_image_request, create_mapping, create_stream};
use super::status::{self, GROUP, Reply};
use super::{Fault, FaultAction, Grant, Recorded, Shared, State};

pub const API_VERSION: &str = "image.openshift.io/v1";

/// What the server needs from an HTTP request.
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub body: bytes::Bytes,
}

/// Answer one request; `None` means "drop the connection without answering".
pub async fn handle(shared: &Shared, req: &Request) -> Option<Reply> {
    let fault = take_fault(shared, req);
    match fault {
        Some(FaultAction::Drop) => {
            record(shared, req, 0);
            return None;
        }
        Some(FaultAction::Status(code, retry_after)) => {
            let mut reply = status::for_code(code);
            if let Some(secs) = retry_after {
                reply.headers.push(("Retry-After", secs.to_string()));
            }
            record(shared, req, reply.code);
            return Some(reply);
        }
        Some(FaultAction::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let reply = dispatch(&mut super::lock(shared), req);
    record(shared, req, reply.code);
    Some(reply)
}

fn take_fault(shared: &Shared, req: &Request) -> Option<FaultAction> {
    let mut st = super::lock(shared);
    let matches = |f: &Fault| {
        req.path.contains(&f.path_contains)
            && f.method
                .as_ref()
                .is_none_or(|m| m.eq_ignore_ascii_case(&req.method))
    };
    let i = st.faults.iter().position(|(f, _)| matches(f))?;
    let (fault, used) = &mut st.faults[i];
    *used += 1;
    let action = fault.action.clone();
    if fault.times != 0 && *used >= fault.times {
        st.faults.remove(i);
    }
    Some(action)
}

fn record(shared: &Shared, req: &Request, code: u16) {
    let body = if req.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&req.body)
            .unwrap_or_else(|_| Value::from(String::from_utf8_lossy(&req.body)))
    };
    super::lock(shared).requests.push(Recorded {
        method: req.method.clone(),
        path: req.path.clone(),
        query: req.query.clone(),
        status: code,
        body,
        at: std::time::Instant::now(),
    });
}

fn discovery(path: &str) -> Option<Value> {
    let gv = json!({"groupVersion": API_VERSION, "version": "v1"});
    let all_verbs = json!([
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch"
    ]);
    Some(match path {
        "/api" => {
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        }
        "/apis" => json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": GROUP, "versions": [gv], "preferredVersion": gv}]}),
        "/apis/image.openshift.io" => json!({"kind": "APIGroup", "apiVersion": "v1", "name": GROUP,
            "versions": [gv], "preferredVersion": gv}),
        "/apis/image.openshift.io/v1" => json!({"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": API_VERSION, "resources": [
            {"name": "images", "singularName": "image", "namespaced": false, "kind": "Image", "verbs": all_verbs},
            {"name": "imagestreammappings", "singularName": "imagestreammapping", "namespaced": true,
             "kind": "ImageStreamMapping", "verbs": ["create"]},
            {"name": "imagestreams", "singularName": "imagestream", "namespaced": true, "kind": "ImageStream",
             "verbs": all_verbs, "shortNames": ["is"], "categories": ["all"]}]}),
        _ => return None,
    })
}

fn version() -> Value {
    json!({"major": "1", "minor": "33", "gitVersion": "v1.33.5", "gitCommit": "0000000000000000000000000000000000000000",
           "gitTreeState": "clean", "buildDate": "2025-10-01T00:00:00Z", "goVersion": "go1.24.6",
           "compiler": "gc", "platform": "linux/amd64"})
}

fn allowed(grants: &[Grant], ns: Option<&str>, resource: &str, verb: &str) -> bool {
    grants.iter().any(|g| {
        (g.resource == "*" || g.resource == resource)
            && (g.verb == "*" || g.verb == verb)
            && (g.namespace.is_none() || g.namespace.as_deref() == ns)
    })
}

fn dispatch(st: &mut State, req: &Request) -> Reply {
    // Authentication: a bearer token that matches no user is 401; no credentials is anonymous.
    let bearer = req.authorization.as_deref().and_then(|h| {
        let (scheme, token) = h.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string())
    });
    let (user, grants) = match bearer {
        Some(token) => match st.tokens.get(&token) {
            Some(t) => (t.user.clone(), t.grants.clone()),
            None => return status::unauthorized(),
        },
        None => (super::ANONYMOUS.to_string(), Vec::new()),
    };
    let anonymous = user == super::ANONYMOUS;
    let path = if req.path.len() > 1 {
        req.path.trim_end_matches('/')
    } else {
        req.path.as_str()
    };
    if path == "/version" {
        return Reply::new(200, version());
    }
    if let Some(doc) = discovery(path) {
        // system:discovery is bound to authenticated users only.
        return if anonymous {
            status::forbidden_path(&user, path)
        } else {
            Reply::new(200, doc)
        };
    }
    let Some(rest) = path.strip_prefix("/apis/image.openshift.io/v1/") else {
        return if anonymous {
            status::forbidden_path(&user, path)
        } else {
            status::not_found_path()
        };
    };
    let segs: Vec<&str> = rest.split('/').collect();
    let (ns, resource, name) = match segs.as_slice() {
        ["namespaces", ns, res] => (Some(*ns), res.to_string(), None),
        ["namespaces", ns, res, name] => (Some(*ns), res.to_string(), Some(*name)),
        ["namespaces", ns, res, name, sub] => (Some(*ns), format!("{res}/{sub}"), Some(*name)),
        [res] => (None, res.to_string(), None),
        [res, name] => (None, res.to_string(), Some(*name)),
        _ => return status::not_found_path(),
    };
    let verb = match (req.method.as_str(), name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    };
    if !allowed(&grants, ns, &resource, verb) {
        return status::forbidden(&user, verb, &resource, ns, name.unwrap_or(""));
    }
    match (ns, resource.as_str(), name, verb) {
        (Some(ns), "imagestreams", None, "list") => list_streams(st, ns),
        (Some(ns), "imagestreams", None, "create") => create_stream(st, ns, req),
        (Some(ns), "imagestreams", Some(name), "get") => {
            match st.streams.get(&(ns.to_string(), name.to_string())) {
                Some(stream) => Reply::new(200, stream.clone()),
                None => status::not_found(GROUP, "imagestreams", name),
            }
        }
        (Some(ns), "imagestreammappings", None, "create") => create_mapping(st, ns, req),
        (None, "images", None, "list") => list_images(st),
        (None, "images", None, "create") => create_image_request(st, req),
        (None, "images", Some(name), "get") => match st.images.get(name) {
            Some(image) => Reply::new(200, image.clone()),
            None => status::not_found(GROUP, "images", name),
        },
        (Some(_), "imagestreams" | "imagestreammappings", _, _) | (None, "images", _, _) => {
            status::method_not_allowed()
        }
        _ => status::not_found_path(),
    }
}

fn list_streams(st: &State, ns: &str) -> Reply {
    let items: Vec<Value> = st
        .streams
        .iter()
        .filter(|((n, _), _)| n == ns)
        .map(|(_, v)| v.clone())
        .collect();
    let rv = st.resource_version.to_string();
    Reply::new(
        200,
        json!({"kind": "ImageStreamList", "apiVersion": API_VERSION, "metadata": {"resourceVersion": rv}, "items": items}),
    )
}

fn list_images(st: &State) -> Reply {
    let items: Vec<Value> = st.images.values().cloned().collect();
    let rv = st.resource_version.to_string();
    Reply::new(
        200,
        json!({"kind": "ImageList", "apiVersion": API_VERSION, "metadata": {"resourceVersion": rv}, "items": items}),
    )
}
