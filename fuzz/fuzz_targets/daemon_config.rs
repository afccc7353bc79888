//! The daemon's YAML configuration (SPEC §3): `Config::from_yaml` never panics, whatever the text. Relative
//! secret paths resolve under a directory that does not exist; absolute ones are read as the text says, so
//! run this target in a throw-away container or VM.
#![no_main]

use std::path::Path;

use imagestream_ingest::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = Config::from_yaml(text, Path::new("/nonexistent"));
});
