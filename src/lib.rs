//! imagestream-ingest: a registry push webhook daemon that creates OpenShift ImageStreamMappings.
//!
//! # Layout
//!
//! The modules follow the data flow (SPEC §1):
//!
//! ```text
//! http (receive, auth, size limit) → sources (parse → PushEvent) → queue (durable, fsync'd)
//!     → worker (level-triggered) → registry (fetch + verify) → manifest (bytes → facts)
//!     → openshift (build Image / ImageStreamMapping) → sink (kube | directory)
//! ```
//!
//! - [`config`]: YAML → typed, validated [`config::Config`]; secrets only from files.
//! - [`event`]: the normalised [`event::PushEvent`].
//! - [`digest`]: digests over exact bytes.
//! - [`metrics`]: typed Prometheus metrics.

pub mod app;
pub mod cli;
pub mod config;
pub mod digest;
pub mod event;
pub mod http;
pub mod manifest;
pub mod mapping;
pub mod metrics;
pub mod openshift;
pub mod queue;
pub mod rbac;
pub mod registry;
pub mod resync;
pub mod sink;
pub mod sources;
pub mod telemetry;
pub mod worker;
