//! Every notification source type (`POST /notify/<source>`, SPEC §4) as a hostile sender writes it. Input
//! layout: byte 0 picks the source type, byte 1 the request headers (none, GitHub `package`, GitHub
//! `registry_package`, CloudEvents binary mode), the rest is the body. Parsing never panics, and every
//! push it yields names a valid repository, tag and digest of the configured registry.
#![no_main]

use imagestream_ingest::config::SourceType;
use imagestream_ingest::digest::Digest;
use imagestream_ingest::event::Notice;
use imagestream_ingest::mapping::is_valid_tag;
use imagestream_ingest::registry::validate_repository;
use imagestream_ingest::sources::{self, Origin, RequestHeaders};
use libfuzzer_sys::fuzz_target;

const ORIGIN: Origin<'static> = Origin {
    source: "src",
    registry: "reg",
    received_at_ms: 1,
};

fn headers(preset: u8) -> RequestHeaders {
    let pairs: &[(&str, &str)] = match preset % 4 {
        1 => &[("X-GitHub-Event", "package"), ("X-GitHub-Delivery", "d-1")],
        2 => &[
            ("X-GitHub-Event", "registry_package"),
            ("X-GitHub-Delivery", "d-2"),
        ],
        3 => &[
            ("Ce-Type", "zotregistry.image.updated"),
            ("Ce-Specversion", "1.0"),
            ("Ce-Id", "ce-1"),
            ("Ce-Time", "2026-01-01T00:00:00Z"),
        ],
        _ => &[],
    };
    RequestHeaders::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fuzz_target!(|input: &[u8]| {
    let [kind, preset, body @ ..] = input else {
        return;
    };
    let kind = SourceType::ALL[usize::from(*kind) % SourceType::ALL.len()];
    let Ok(notices) = sources::parse_request(kind, ORIGIN, &headers(*preset), body) else {
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
