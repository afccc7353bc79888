//! Criterion benchmarks of the pure core: notification parsing, manifest digest + parse, config parse, and the
//! Image / ImageStreamMapping build + JSON encoding that every job does once per push.
//!
//! Inputs are generated here (deterministic, realistic sizes); nothing reads files outside the repository and
//! nothing does I/O inside a measured closure. Run with `cargo bench --bench core` (about a minute).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use imagestream_ingest::config::SourceType;
use imagestream_ingest::digest::Digest;
use imagestream_ingest::manifest::{Manifest, parse_config, parse_manifest};
use imagestream_ingest::openshift::{BuildOptions, build_image, build_index_image, build_mapping};
use imagestream_ingest::sources::{self, Origin};
use serde_json::{Value, json};

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const EVENTS_V1: &str = "application/vnd.docker.distribution.events.v1+json";
const PULL_HOST: &str = "registry.corp.example:5000";
const REPOSITORY: &str = "team/app";

const ORIGIN: Origin<'static> = Origin {
    source: "corp",
    registry: "corp",
    received_at_ms: 1_700_000_000_000,
};

fn digest_of(seed: &str) -> String {
    Digest::sha256(seed.as_bytes()).to_string()
}

/// One push event as CNCF distribution 2.8 sends it (target, request, actor, source).
fn push_event(i: usize) -> Value {
    json!({
        "id": format!("3e9b2d1c-7a5f-4c1e-9d0b-{i:012}"),
        "timestamp": "2026-01-02T03:04:05.123456789Z",
        "action": "push",
        "target": {
            "mediaType": DOCKER_MANIFEST,
            "size": 1370,
            "digest": digest_of(&format!("manifest {i}")),
            "length": 1370,
            "repository": REPOSITORY,
            "url": format!("https://{PULL_HOST}/v2/{REPOSITORY}/manifests/{}", digest_of(&format!("manifest {i}"))),
            "tag": format!("v1.{i}"),
        },
        "request": {"id": "6c0f4a8e-1b2d-4e3f-8a9b-0c1d2e3f4a5b", "addr": "10.0.0.7:51234",
                    "host": PULL_HOST, "method": "PUT", "useragent": "containers/5.30.0 (github.com/containers/image)"},
        "actor": {"name": "ci-bot"},
        "source": {"addr": "registry-0:5000", "instanceID": "0d6b4d4e-6f35-4e02-9b2d-1c2a3b4c5d6e"},
    })
}

fn envelope(n: usize) -> Vec<u8> {
    let events: Vec<Value> = (0..n).map(push_event).collect();
    serde_json::to_vec(&json!({ "events": events })).expect("envelope json")
}

/// A Docker image config of typical size: env, labels, exposed ports, 12 history entries.
fn config_bytes() -> Vec<u8> {
    let history: Vec<Value> = (0..12)
        .map(|i| json!({"created": "2024-05-06T07:08:09.123456789Z",
                         "created_by": format!("/bin/sh -c #(nop) RUN step {i} && dnf -y install pkg-{i} && dnf clean all"),
                         "empty_layer": i % 3 == 0}))
        .collect();
    let diff_ids: Vec<String> = (0..8).map(|i| digest_of(&format!("diff {i}"))).collect();
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "author": "Platform Team <platform@corp.example>",
        "created": "2024-05-06T07:08:09.123456789Z",
        "docker_version": "24.0.7",
        "container": "4c3f1b2a9d8e",
        "config": {
            "User": "1001",
            "ExposedPorts": {"8080/tcp": {}},
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "APP_ROOT=/opt/app-root",
                    "HOME=/opt/app-root/src", "PLATFORM=el9", "LANG=C.utf8"],
            "Cmd": ["/usr/libexec/s2i/run"],
            "WorkingDir": "/opt/app-root/src",
            "Labels": {"io.k8s.description": "Application image", "io.openshift.tags": "builder,app",
                       "org.opencontainers.image.revision": "0123456789abcdef", "vendor": "Corp"},
        },
        "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) CMD [\"/usr/libexec/s2i/run\"]"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    });
    serde_json::to_vec(&config).expect("config json")
}

/// A schema2 manifest with 8 layers whose config descriptor names `config`.
fn schema2_bytes(config: &[u8]) -> Vec<u8> {
    let layers: Vec<Value> = (0..8)
        .map(|i| json!({"mediaType": DOCKER_LAYER, "size": 1_000_000 + i * 7919, "digest": digest_of(&format!("layer {i}"))}))
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": config.len(), "digest": Digest::sha256(config).to_string()},
        "layers": layers,
    });
    serde_json::to_vec_pretty(&manifest).expect("manifest json")
}

/// An OCI index with 50 platform children (the size of a busy multi-arch + variants image).
fn index_bytes() -> Vec<u8> {
    let archs = [
        ("amd64", None),
        ("arm64", Some("v8")),
        ("arm", Some("v7")),
        ("ppc64le", None),
        ("s390x", None),
    ];
    let manifests: Vec<Value> = (0..50)
        .map(|i| {
            let (arch, variant) = archs[i % archs.len()];
            let mut platform = json!({"architecture": arch, "os": "linux"});
            if let Some(v) = variant {
                platform["variant"] = json!(v);
            }
            json!({"mediaType": OCI_MANIFEST, "size": 1200 + i, "digest": digest_of(&format!("child {i}")),
                   "platform": platform})
        })
        .collect();
    serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}))
        .expect("index json")
}

fn notifications(c: &mut Criterion) {
    let one = envelope(1);
    let fifty = envelope(50);
    let mut g = c.benchmark_group("notification");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse 1 event", |b| {
        b.iter(|| sources::parse(SourceType::Distribution, ORIGIN, black_box(&one)).expect("parse"))
    });
    g.throughput(Throughput::Elements(50));
    g.bench_function("parse 50-event envelope", |b| {
        b.iter(|| {
            sources::parse(SourceType::Distribution, ORIGIN, black_box(&fifty)).expect("parse")
        })
    });
    g.finish();
    assert!(sources::accepts_content_type(
        SourceType::Distribution,
        Some(EVENTS_V1)
    ));
}

fn manifests(c: &mut Criterion) {
    let config = config_bytes();
    let schema2 = schema2_bytes(&config);
    let index = index_bytes();
    let mut g = c.benchmark_group("manifest");
    g.bench_function("digest + parse schema2 (8 layers)", |b| {
        b.iter(|| {
            let d = Digest::sha256(black_box(&schema2));
            let m = parse_manifest(black_box(&schema2), Some(DOCKER_MANIFEST)).expect("parse");
            (d, m)
        })
    });
    g.bench_function("digest + parse OCI index (50 children)", |b| {
        b.iter(|| {
            let d = Digest::sha256(black_box(&index));
            let m = parse_manifest(black_box(&index), Some(OCI_INDEX)).expect("parse");
            (d, m)
        })
    });
    g.bench_function("parse config", |b| {
        b.iter(|| parse_config(black_box(&config)).expect("config"))
    });
    g.finish();
}

fn mappings(c: &mut Criterion) {
    let config = config_bytes();
    let schema2 = schema2_bytes(&config);
    let index = index_bytes();
    let manifest_digest = Digest::sha256(&schema2);
    let index_digest = Digest::sha256(&index);
    let Ok(Manifest::Image(image_manifest)) = parse_manifest(&schema2, None) else {
        panic!("schema2 did not parse as an image");
    };
    let Ok(Manifest::Index(image_index)) = parse_manifest(&index, None) else {
        panic!("index did not parse as an index");
    };
    let parsed_config = parse_config(&config).expect("config");
    let opts = BuildOptions {
        pull_host: PULL_HOST,
        store_manifests: false,
    };
    let mut g = c.benchmark_group("mapping");
    g.bench_function("build image + mapping + serialize (schema2)", |b| {
        b.iter(|| {
            let image = build_image(
                REPOSITORY,
                &manifest_digest,
                black_box(&schema2),
                &image_manifest,
                black_box(&config),
                &parsed_config,
                &opts,
            )
            .expect("build");
            let mapping = build_mapping("team", "app", "v1", image);
            serde_json::to_vec(&mapping).expect("json")
        })
    });
    g.bench_function(
        "build index image + mapping + serialize (50 children)",
        |b| {
            b.iter(|| {
                let image = build_index_image(
                    REPOSITORY,
                    &index_digest,
                    black_box(&index),
                    &image_index,
                    &opts,
                )
                .expect("build");
                let mapping = build_mapping("team", "app", "v1", image);
                serde_json::to_vec(&mapping).expect("json")
            })
        },
    );
    g.bench_function("serialize mapping only (schema2)", |b| {
        let image = build_image(
            REPOSITORY,
            &manifest_digest,
            &schema2,
            &image_manifest,
            &config,
            &parsed_config,
            &opts,
        )
        .expect("build");
        let mapping = build_mapping("team", "app", "v1", image);
        b.iter_batched_ref(
            || mapping.clone(),
            |m| serde_json::to_vec(black_box(m)).expect("json"),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// The whole pure path of one job: digest + parse manifest, parse config, build, serialize.
fn whole_job(c: &mut Criterion) {
    let config = config_bytes();
    let schema2 = schema2_bytes(&config);
    let opts = BuildOptions {
        pull_host: PULL_HOST,
        store_manifests: false,
    };
    c.bench_function("job: pure work for one schema2 push", |b| {
        b.iter(|| {
            let digest = Digest::sha256(black_box(&schema2));
            let Ok(Manifest::Image(m)) = parse_manifest(&schema2, Some(DOCKER_MANIFEST)) else {
                panic!("not an image");
            };
            m.config.digest.verify(&config).expect("config digest");
            let parsed = parse_config(black_box(&config)).expect("config");
            let image = build_image(REPOSITORY, &digest, &schema2, &m, &config, &parsed, &opts)
                .expect("build");
            serde_json::to_vec(&build_mapping("team", "app", "v1", image)).expect("json")
        })
    });
}

fn short() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = short();
    targets = notifications, manifests, mappings, whole_job
}
criterion_main!(benches);
