//! A distribution notification body (`POST /notify/<source>`, SPEC §4) as a hostile sender writes it: parsing
//! never panics, and every push it yields names a valid repository, tag and digest of the configured registry.
#![no_main]

use imagestream_ingest::config::SourceType;
use imagestream_ingest::digest::Digest;
use imagestream_ingest::event::Notice;
use imagestream_ingest::mapping::is_valid_tag;
use imagestream_ingest::registry::validate_repository;
use imagestream_ingest::sources::{self, Origin};
use libfuzzer_sys::fuzz_target;

const ORIGIN: Origin<'static> = Origin {
    source: "src",
    registry: "reg",
    received_at_ms: 1,
};

fuzz_target!(|body: &[u8]| {
    let Ok(notices) = sources::parse(SourceType::Distribution, ORIGIN, body) else {
        return;
    };
    for n in notices {
        if let Notice::Push(p) = n {
            assert!(
                validate_repository(&p.repository).is_ok(),
                "{:?}",
                p.repository
            );
            assert!(is_valid_tag(&p.tag), "{:?}", p.tag);
            if let Some(d) = &p.digest {
                assert!(Digest::parse(d).is_ok(), "{d:?}");
            }
            assert_eq!(p.registry, "reg");
        }
    }
});
