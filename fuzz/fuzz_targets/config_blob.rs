//! An image config blob exactly as fetched from the registry (SPEC §5): `parse_config` never panics and
//! accepts only a JSON object.
#![no_main]

use imagestream_ingest::manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|blob: &[u8]| {
    if manifest::parse_config(blob).is_ok() {
        let v: serde_json::Value = serde_json::from_slice(blob).expect("accepted config is JSON");
        assert!(v.is_object());
    }
});
