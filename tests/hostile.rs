//! Hostile input against the real daemon binary (SPEC §1, §4): whatever a sender or a registry throws at it,
//! the daemon answers with a defined status, loses nothing it accepted, queues nothing it should not, never
//! dereferences a payload's URLs, never leaves its configured namespaces, never logs a secret, and never panics.
//!
//! Cases live in `tests/hostile/`: `bodies` (JSON, size, content type, credentials), `names` (repositories,
//! tags, digests), `registry_side` (real registry + cluster emulator), sharing `harness`.

mod support;

#[path = "hostile/bodies.rs"]
mod bodies;
#[path = "hostile/harness.rs"]
mod harness;
#[path = "hostile/names.rs"]
mod names;
#[path = "hostile/registry_side.rs"]
mod registry_side;
