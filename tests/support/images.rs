//! Images built from scratch into an OCI image layout on disk (no network, deterministic bytes), pushed to a
//! test registry with skopeo, and read back from the registry independently of the daemon's code so tests
//! can compute expected values. It must not use the host's skopeo state (auth file, blob-info cache).

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

use super::registry::{Registry, tail};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The annotation skopeo's `oci:` transport resolves a tag with.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Fixed `created` of every built image (and mtime of every file in its layers).
pub const CREATED: &str = "2024-05-06T07:08:09Z";
const MTIME: u64 = 1_714_979_289;
const SKOPEO_DEADLINE: Duration = Duration::from_secs(60);
/// Any non-zero uid: containers/image then keeps its blob-info cache under `XDG_DATA_HOME` instead of the
/// machine-wide `/var/lib/containers/cache` it uses for root, so every push starts from an empty cache.
const ROOTLESS_UID: &str = "1000";

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The manifest format skopeo writes to the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Keep OCI (bytes preserved: the pushed digest equals the layout's).
    Oci,
    /// Convert to Docker schema 2 (an index becomes a manifest list with `--all`).
    V2s2,
}

impl Format {
    fn flag(self) -> &'static str {
        match self {
            Format::Oci => "oci",
            Format::V2s2 => "v2s2",
        }
    }
}

/// One layer blob of a built image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    /// sha256 of the uncompressed tar (the config's `rootfs.diff_ids` entry).
    pub diff_id: String,
}

/// An image written into a layout.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub manifest_bytes: Vec<u8>,
    pub manifest_digest: String,
    pub config_bytes: Vec<u8>,
    pub config_digest: String,
    pub layers: Vec<Layer>,
    pub architecture: String,
    pub os: String,
    pub variant: Option<String>,
}

/// An OCI image layout on disk: `oci-layout`, `index.json`, `blobs/sha256/…`.
pub struct OciLayout {
    pub dir: PathBuf,
}

fn gzipped_tar(content: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(MTIME);
    header.set_entry_type(tar::EntryType::Regular);
    // Named after the content, so identical contents give identical layers.
    let name = format!("files/{}", &hex::encode(Sha256::digest(content))[..16]);
    builder
        .append_data(&mut header, name, content)
        .expect("tar entry");
    let tar = builder.into_inner().expect("tar finish");
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&tar).expect("gzip");
    (tar, gz.finish().expect("gzip finish"))
}

impl OciLayout {
    /// Create (or reuse) a layout in `dir`.
    pub fn new(dir: &Path) -> Self {
        fs::create_dir_all(dir.join("blobs/sha256")).expect("layout dirs");
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("oci-layout");
        let index = dir.join("index.json");
        if !index.exists() {
            let empty = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []});
            fs::write(&index, serde_json::to_vec(&empty).expect("json")).expect("index.json");
        }
        OciLayout {
            dir: dir.to_path_buf(),
        }
    }

    /// Store `bytes` as a blob; returns its digest.
    pub fn write_blob(&self, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        let hex = digest.trim_start_matches("sha256:");
        fs::write(self.dir.join("blobs/sha256").join(hex), bytes).expect("write blob");
        digest
    }

    /// Point `tag` at a descriptor in index.json, replacing any earlier entry for that tag.
    fn tag(&self, tag: &str, mut descriptor: Value) {
        let path = self.dir.join("index.json");
        let mut index: Value =
            serde_json::from_slice(&fs::read(&path).expect("read index.json")).expect("index.json");
        let manifests = index["manifests"].as_array_mut().expect("manifests array");
        manifests.retain(|m| m["annotations"][REF_NAME].as_str() != Some(tag));
        descriptor["annotations"] = json!({ REF_NAME: tag });
        manifests.push(descriptor);
        fs::write(&path, serde_json::to_vec(&index).expect("json")).expect("write index.json");
    }

    /// Build an image whose layers hold `layer_contents` (one file each, gzipped tar), with a config carrying
    /// the platform, `created`, `author`, `Env`/`Cmd`/`Labels`, diff_ids and history; tag it `tag`.
    /// Same inputs give the same digests.
    pub fn add_image(
        &self,
        tag: &str,
        arch: &str,
        os: &str,
        variant: Option<&str>,
        layer_contents: &[&[u8]],
    ) -> BuiltImage {
        let mut layers = Vec::new();
        for content in layer_contents {
            let (tar, gz) = gzipped_tar(content);
            layers.push(Layer {
                digest: self.write_blob(&gz),
                size: gz.len() as u64,
                media_type: OCI_LAYER_GZIP.to_string(),
                diff_id: sha256_digest(&tar),
            });
        }
        let history: Vec<Value> = (0..layers.len())
            .map(|i| json!({"created": CREATED, "created_by": format!("imagestream-ingest tests: layer {i}")}))
            .collect();
        let mut config = json!({
            "created": CREATED,
            "author": "imagestream-ingest tests <tests@example.invalid>",
            "architecture": arch,
            "os": os,
            "config": {
                "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", format!("LAYER_COUNT={}", layers.len())],
                "Cmd": ["/app", "--serve"],
                "Labels": {"org.opencontainers.image.title": "imagestream-ingest test image"},
            },
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
            "history": history,
        });
        if let Some(v) = variant {
            config["variant"] = json!(v);
        }
        let config_bytes = serde_json::to_vec(&config).expect("config json");
        let config_digest = self.write_blob(&config_bytes);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_bytes.len()},
            "layers": layers.iter().map(|l| json!({"mediaType": l.media_type, "digest": l.digest, "size": l.size})).collect::<Vec<_>>(),
        });
        let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest json");
        let manifest_digest = self.write_blob(&manifest_bytes);
        let image = BuiltImage {
            manifest_bytes,
            manifest_digest,
            config_bytes,
            config_digest,
            layers,
            architecture: arch.to_string(),
            os: os.to_string(),
            variant: variant.map(str::to_string),
        };
        self.tag(
            tag,
            descriptor(
                OCI_MANIFEST,
                &image.manifest_digest,
                image.manifest_bytes.len(),
                Some(&image),
            ),
        );
        image
    }

    /// An OCI index over `children` (each with its platform), tagged `tag`. Returns (bytes, digest).
    pub fn add_index(&self, tag: &str, children: &[&BuiltImage]) -> (Vec<u8>, String) {
        let manifests: Vec<Value> = children
            .iter()
            .map(|c| {
                descriptor(
                    OCI_MANIFEST,
                    &c.manifest_digest,
                    c.manifest_bytes.len(),
                    Some(c),
                )
            })
            .collect();
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        let bytes = serde_json::to_vec(&index).expect("index json");
        let digest = self.write_blob(&bytes);
        self.tag(tag, descriptor(OCI_INDEX, &digest, bytes.len(), None));
        (bytes, digest)
    }
}

fn descriptor(
    media_type: &str,
    digest: &str,
    size: usize,
    platform_of: Option<&BuiltImage>,
) -> Value {
    let mut d = json!({"mediaType": media_type, "digest": digest, "size": size});
    if let Some(image) = platform_of {
        let mut platform = json!({"architecture": image.architecture, "os": image.os});
        if let Some(v) = &image.variant {
            platform["variant"] = json!(v);
        }
        d["platform"] = platform;
    }
    d
}

/// Push `layout:tag` to `reg` as `dest_ref` (`ns/name:tag` or `ns/name@sha256:…`) with skopeo, converting to
/// `format`; `all` copies every image of an index. Each call gets a fresh blob-info cache and auth file, so
/// the HEAD/mount/upload pattern (and thus the registry's events) repeats exactly. Panics with skopeo's
/// output and the registry log tail on failure.
pub fn skopeo_copy(
    layout: &OciLayout,
    tag: &str,
    reg: &Registry,
    dest_ref: &str,
    format: Format,
    all: bool,
) {
    let mut args: Vec<String> = vec![
        "--insecure-policy".into(),
        "copy".into(),
        "--format".into(),
        format.flag().into(),
    ];
    if all {
        args.push("--all".into());
    }
    match &reg.cert_dir {
        Some(dir) => args.push(format!("--dest-cert-dir={}", dir.display())),
        None => args.push("--dest-tls-verify=false".into()),
    }
    if let Some(creds) = reg.skopeo_creds() {
        args.push(format!("--dest-creds={creds}"));
    }
    args.push(format!("oci:{}:{tag}", layout.dir.display()));
    args.push(format!("docker://{}/{dest_ref}", reg.host));
    let (ok, output) = run_skopeo(&args);
    if !ok {
        panic!(
            "skopeo {} failed:\n{output}\n--- registry log tail ---\n{}",
            args.join(" "),
            tail(&reg.log(), 30)
        );
    }
}

/// Run skopeo with a private XDG/auth environment and a deadline. Returns (success, combined output).
pub fn run_skopeo(args: &[String]) -> (bool, String) {
    let scratch = TempDir::new().expect("skopeo scratch dir");
    let out_path = scratch.path().join("skopeo.out");
    let out = fs::File::create(&out_path).expect("skopeo output file");
    let mut child = Command::new("skopeo")
        .args(args)
        .env("XDG_DATA_HOME", scratch.path().join("data"))
        .env("XDG_CONFIG_HOME", scratch.path().join("config"))
        .env("XDG_RUNTIME_DIR", scratch.path().join("run"))
        .env("_CONTAINERS_ROOTLESS_UID", ROOTLESS_UID)
        .env("REGISTRY_AUTH_FILE", scratch.path().join("auth.json"))
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone output handle"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run skopeo (apt-get install skopeo): {e}"));
    let deadline = Instant::now() + SKOPEO_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait skopeo") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = fs::read_to_string(&out_path).unwrap_or_default();
    match status {
        Some(s) => (s.success(), output),
        None => (
            false,
            format!("timed out after {SKOPEO_DEADLINE:?}\n{output}"),
        ),
    }
}

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// The manifest `repo:reference` as the registry serves it: (bytes, Content-Type, digest computed here).
/// Panics if the registry's `Docker-Content-Digest` disagrees with the bytes.
pub fn registry_manifest(reg: &Registry, repo: &str, reference: &str) -> (Vec<u8>, String, String) {
    let got = reg.get_blocking(
        &format!("/v2/{repo}/manifests/{reference}"),
        MANIFEST_ACCEPT,
    );
    assert_eq!(
        got.status,
        200,
        "GET manifest {repo}:{reference}: {}",
        String::from_utf8_lossy(&got.body)
    );
    let digest = sha256_digest(&got.body);
    if let Some(header) = &got.docker_digest {
        assert_eq!(
            header, &digest,
            "Docker-Content-Digest of {repo}:{reference}"
        );
    }
    (got.body, got.content_type, digest)
}

/// The blob `digest` of `repo`, checked against its digest.
pub fn registry_blob(reg: &Registry, repo: &str, digest: &str) -> Vec<u8> {
    let got = reg.get_blocking(&format!("/v2/{repo}/blobs/{digest}"), "*/*");
    assert_eq!(got.status, 200, "GET blob {repo}@{digest}");
    assert_eq!(
        sha256_digest(&got.body),
        digest,
        "blob bytes match their digest"
    );
    got.body
}
