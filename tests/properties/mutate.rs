//! Structured and byte-wise mutations of JSON fixtures for the property tests: pick any node of the document
//! and replace, remove, duplicate or wrap it, with values biased towards what hostile senders use (path
//! climbs, encoded slashes, upper case, unicode, over-long names, almost-valid digests, wrong JSON types).

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Value};

/// Strings a hostile sender tries, beside generated ones.
const HOSTILE: &[&str] = &[
    "",
    "..",
    "team/..",
    "team/../kube-system/app",
    "team%2fapp",
    "team/%2e%2e/app",
    "Team/App",
    "team/ápp",
    "team//app",
    "/team/app",
    "team/app/",
    "team/app\u{0}",
    "team/app\n",
    "-v1",
    ".v1",
    "v1/../x",
    "push",
    "pull",
    "delete",
    "mount",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.container.image.v1+json",
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.cncf.helm.config.v1+json",
    "sha256:4afff550708506c5b8b7384ad10d401a02b29ed587cb2730cb02753095b5178d",
    "sha256:4AFFF550708506C5B8B7384AD10D401A02B29ED587CB2730CB02753095B5178D",
    "sha256:../../etc/passwd",
    "sha512:4afff550708506c5b8b7384ad10d401a02b29ed587cb2730cb02753095b5178d",
    "http://169.254.169.254/latest/meta-data",
    "\u{202e}gnp.exe",
    "\u{fffd}\u{fffd}",
];

/// Field names of the formats, so replacements build plausible objects.
const KEYS: &[&str] = &[
    "events",
    "id",
    "timestamp",
    "action",
    "target",
    "mediaType",
    "digest",
    "repository",
    "tag",
    "size",
    "length",
    "url",
    "request",
    "source",
    "schemaVersion",
    "config",
    "layers",
    "manifests",
    "platform",
    "architecture",
    "os",
    "artifactType",
    "created",
    "Env",
];

/// One change to a JSON document: which node (any index, wrapped over the document's nodes) and what.
#[derive(Debug, Clone)]
pub struct Edit {
    at: Index,
    kind: EditKind,
}

#[derive(Debug, Clone)]
enum EditKind {
    Replace(Value),
    Remove,
    /// Put a copy of the node beside it (arrays) or under another key (objects).
    Duplicate(String),
    /// Turn `x` into `[x]`.
    WrapInArray,
}

/// A byte-level change to a serialized document.
#[derive(Debug, Clone)]
pub enum ByteEdit {
    Set(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
}

pub fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(HOSTILE).prop_map(str::to_string),
        3 => "[a-z0-9]{1,6}(/[a-z0-9._-]{1,8}){0,3}",
        1 => "[A-Za-z0-9_.:@/%-]{0,40}",
        1 => "sha(256|512):[0-9a-f]{60,130}",
        1 => any::<String>(),
        1 => "[a-z]{300}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        hostile_string().prop_map(Value::String),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(KEYS).prop_map(str::to_string),
        1 => "[a-zA-Z~/]{1,8}",
    ]
}

pub fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn edit() -> impl Strategy<Value = Edit> {
    let kind = prop_oneof![
        4 => hostile_string().prop_map(|s| EditKind::Replace(Value::String(s))),
        2 => json_value().prop_map(EditKind::Replace),
        1 => Just(EditKind::Remove),
        1 => key().prop_map(EditKind::Duplicate),
        1 => Just(EditKind::WrapInArray),
    ];
    (any::<Index>(), kind).prop_map(|(at, kind)| Edit { at, kind })
}

pub fn json_edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(edit(), 0..5)
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Set(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Insert(i, b)),
        any::<Index>().prop_map(ByteEdit::Delete),
        any::<Index>().prop_map(ByteEdit::Truncate),
    ]
}

pub fn byte_edits() -> impl Strategy<Value = Vec<ByteEdit>> {
    prop::collection::vec(byte_edit(), 0..4)
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// JSON pointers of every node below the root, parents before children.
fn pointers(v: &Value, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(item, &p, out);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                let p = format!("{at}/{}", escape(k));
                out.push(p.clone());
                pointers(item, &p, out);
            }
        }
        _ => {}
    }
}

/// Split a pointer into its parent pointer and last (unescaped) token.
fn split(pointer: &str) -> (&str, String) {
    let cut = pointer.rfind('/').unwrap_or(0);
    let token = pointer[cut + 1..].replace("~1", "/").replace("~0", "~");
    (&pointer[..cut], token)
}

fn apply(root: &mut Value, edit: &Edit) {
    let mut all = Vec::new();
    pointers(root, "", &mut all);
    if all.is_empty() {
        if let EditKind::Replace(v) = &edit.kind {
            *root = v.clone();
        }
        return;
    }
    let pointer = edit.at.get(&all).clone();
    match &edit.kind {
        EditKind::Replace(v) => {
            if let Some(node) = root.pointer_mut(&pointer) {
                *node = v.clone();
            }
        }
        EditKind::WrapInArray => {
            if let Some(node) = root.pointer_mut(&pointer) {
                *node = Value::Array(vec![node.take()]);
            }
        }
        EditKind::Remove | EditKind::Duplicate(_) => {
            let (parent, token) = split(&pointer);
            let copy = root.pointer(&pointer).cloned();
            match (root.pointer_mut(parent), &edit.kind, copy) {
                (Some(Value::Array(items)), EditKind::Remove, _) => {
                    if let Ok(i) = token.parse::<usize>() {
                        if i < items.len() {
                            items.remove(i);
                        }
                    }
                }
                (Some(Value::Object(map)), EditKind::Remove, _) => {
                    map.remove(&token);
                }
                (Some(Value::Array(items)), EditKind::Duplicate(_), Some(c)) => items.push(c),
                (Some(Value::Object(map)), EditKind::Duplicate(k), Some(c)) => {
                    map.insert(k.clone(), c);
                }
                _ => {}
            }
        }
    }
}

pub fn apply_edits(root: &mut Value, edits: &[Edit]) {
    for e in edits {
        apply(root, e);
    }
}

pub fn apply_bytes(base: &[u8], edits: &[ByteEdit]) -> Vec<u8> {
    let mut out = base.to_vec();
    for e in edits {
        if out.is_empty() {
            if let ByteEdit::Insert(_, b) = e {
                out.push(*b);
            }
            continue;
        }
        match e {
            ByteEdit::Set(i, b) => {
                let i = i.index(out.len());
                out[i] = *b;
            }
            ByteEdit::Insert(i, b) => {
                let i = i.index(out.len() + 1);
                out.insert(i, *b);
            }
            ByteEdit::Delete(i) => {
                let i = i.index(out.len());
                out.remove(i);
            }
            ByteEdit::Truncate(i) => {
                let i = i.index(out.len());
                out.truncate(i);
            }
        }
    }
    out
}
