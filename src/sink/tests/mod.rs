//! Tests of the sinks: the answer classification table, the directory sink on a temp dir, and the kube
//! sink against a small actix-web stand-in for the API server (the full emulator lives in `tests/`).

mod classify;
mod directory;
mod kube;
