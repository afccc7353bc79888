//! Fills the real registry for the load benchmark: one image pushed with skopeo (the real push path), then
//! many more manifests made cheaply over the distribution API — layers cross-repository mounted, a distinct
//! config blob per push when pushes must be distinct images, and one manifest PUT per tag.
//! It only ever talks to the registry it is given.

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::support::images::{Format, OciLayout, registry_blob, registry_manifest, skopeo_copy};
use crate::support::registry::Registry;

/// Requests in flight while populating.
const PARALLEL: usize = 8;

/// The pushed base image: the manifest, config and layers every generated manifest reuses.
pub struct Base {
    pub repo: String,
    pub manifest: Value,
    pub media_type: String,
    pub config: Value,
    pub layers: Vec<String>,
    pub config_digest: String,
}

/// One tag the benchmark will notify about / map.
#[derive(Debug, Clone)]
pub struct Push {
    pub repo: String,
    pub tag: String,
    pub digest: String,
    pub media_type: String,
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Build a 3-layer image in an OCI layout under `dir` and push it as Docker schema2 to `repo:v1` with skopeo.
pub fn push_base(reg: &Registry, dir: &std::path::Path, repo: &str) -> Base {
    let layout = OciLayout::new(dir);
    let layers: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            format!("load benchmark layer {i} ")
                .repeat(200 + i * 50)
                .into_bytes()
        })
        .collect();
    let refs: Vec<&[u8]> = layers.iter().map(Vec::as_slice).collect();
    layout.add_image("base", "amd64", "linux", None, &refs);
    skopeo_copy(
        &layout,
        "base",
        reg,
        &format!("{repo}:v1"),
        Format::V2s2,
        false,
    );
    let (bytes, content_type, _) = registry_manifest(reg, repo, "v1");
    let manifest: Value = serde_json::from_slice(&bytes).expect("base manifest json");
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .expect("config digest")
        .to_string();
    let config: Value = serde_json::from_slice(&registry_blob(reg, repo, &config_digest))
        .expect("base config json");
    let layers = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("layer digest").to_string())
        .collect();
    Base {
        repo: repo.to_string(),
        media_type: manifest["mediaType"]
            .as_str()
            .map(str::to_string)
            .unwrap_or(content_type),
        manifest,
        config,
        layers,
        config_digest,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(PARALLEL * 2)
        .build()
        .expect("client")
}

async fn mount(c: &reqwest::Client, reg: &Registry, repo: &str, digest: &str, from: &str) {
    let url = format!(
        "{}/v2/{repo}/blobs/uploads/?mount={digest}&from={from}",
        reg.url
    );
    let r = c.post(&url).send().await.expect("mount");
    assert_eq!(r.status().as_u16(), 201, "mount {digest} into {repo}");
}

/// Monolithic upload: POST for a session, PUT the bytes with `?digest=`.
async fn upload(c: &reqwest::Client, reg: &Registry, repo: &str, bytes: Vec<u8>) -> String {
    let digest = sha256(&bytes);
    let r = c
        .post(format!("{}/v2/{repo}/blobs/uploads/", reg.url))
        .send()
        .await
        .expect("start upload");
    assert_eq!(r.status().as_u16(), 202, "start upload into {repo}");
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("upload location")
        .to_string();
    let location = if location.starts_with('/') {
        format!("{}{location}", reg.url)
    } else {
        location
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = c
        .put(format!("{location}{sep}digest={digest}"))
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .expect("finish upload");
    assert_eq!(r.status().as_u16(), 201, "finish upload into {repo}");
    digest
}

async fn put_manifest(
    c: &reqwest::Client,
    reg: &Registry,
    repo: &str,
    tag: &str,
    bytes: &[u8],
    media_type: &str,
) {
    let r = c
        .put(format!("{}/v2/{repo}/manifests/{tag}", reg.url))
        .header("content-type", media_type)
        .body(bytes.to_vec())
        .send()
        .await
        .expect("put manifest");
    let status = r.status().as_u16();
    assert_eq!(
        status,
        201,
        "PUT manifest {repo}:{tag}: {}",
        r.text().await.unwrap_or_default()
    );
}

/// `n` distinct images (each its own config blob, layers shared), tagged `v<i>` in `team/app<i % streams>`.
pub async fn distinct_pushes(reg: &Registry, base: &Base, n: usize, streams: usize) -> Vec<Push> {
    let c = client();
    let repos: Vec<String> = (0..streams).map(|s| format!("team/app{s:02}")).collect();
    futures_util::stream::iter(repos.iter())
        .for_each_concurrent(PARALLEL, |repo| {
            let c = &c;
            async move {
                for layer in &base.layers {
                    mount(c, reg, repo, layer, &base.repo).await;
                }
            }
        })
        .await;
    futures_util::stream::iter(0..n)
        .map(|i| {
            let c = &c;
            let repo = repos[i % streams].clone();
            async move {
                let mut config = base.config.clone();
                config["config"]["Labels"]["bench.push"] = json!(i.to_string());
                let config_bytes = serde_json::to_vec(&config).expect("config json");
                let size = config_bytes.len();
                let digest = upload(c, reg, &repo, config_bytes).await;
                let mut manifest = base.manifest.clone();
                manifest["config"]["digest"] = json!(digest);
                manifest["config"]["size"] = json!(size);
                let bytes = serde_json::to_vec(&manifest).expect("manifest json");
                let tag = format!("v{i}");
                put_manifest(c, reg, &repo, &tag, &bytes, &base.media_type).await;
                Push {
                    repo,
                    tag,
                    digest: sha256(&bytes),
                    media_type: base.media_type.clone(),
                }
            }
        })
        .buffered(PARALLEL)
        .collect()
        .await
}

/// `repos` repositories `team/r<NNNN>` × `tags` tags `t<j>`, all the base manifest (mounted blobs, one PUT
/// per tag). Returns the repository names and how long it took.
pub async fn tree(
    reg: &Registry,
    base: &Base,
    repos: usize,
    tags: usize,
) -> (Vec<String>, Duration) {
    let started = Instant::now();
    let c = client();
    let bytes = serde_json::to_vec(&base.manifest).expect("manifest json");
    let names: Vec<String> = (0..repos).map(|r| format!("team/r{r:04}")).collect();
    futures_util::stream::iter(names.iter())
        .for_each_concurrent(PARALLEL, |repo| {
            let (c, bytes) = (&c, &bytes);
            async move {
                for blob in base.layers.iter().chain([&base.config_digest]) {
                    mount(c, reg, repo, blob, &base.repo).await;
                }
                for t in 0..tags {
                    put_manifest(c, reg, repo, &format!("t{t}"), bytes, &base.media_type).await;
                }
            }
        })
        .await;
    (names, started.elapsed())
}
