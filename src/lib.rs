//! imagestream-ingest (see the layout map once all stages land).
pub mod config;
pub mod digest;
pub mod event;
pub mod manifest;
pub mod metrics;
pub mod openshift;
pub mod registry;
pub mod queue;
pub mod sink;
