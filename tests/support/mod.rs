//! Shared integration-test support: real processes (registry, daemon), a token issuer, a test PKI, images
//! built from scratch, and the cluster emulator. Test binaries include it with `mod support;`; it must never
//! depend on files outside the repository and the test's own temporary directories (no host registry config).
#![allow(dead_code)]

pub mod daemon;
pub mod emulator;
pub mod images;
pub mod proxy;
pub mod registry;
pub mod tls;
pub mod token;
