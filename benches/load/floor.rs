//! The two baselines the daemon is compared with, on the same registry and an identical emulator:
//! - the floor: a minimal reqwest client doing only the three requests a mapping needs (GET manifest,
//!   GET config blob, POST the ImageStreamMapping), no queue, no checks, same concurrency as the daemon;
//! - the script a team would write instead: `skopeo inspect --raw`, `skopeo inspect --config --raw` and a
//!   `curl` POST per push, serially.
//!
//! Neither is a product: they exist to put the daemon's numbers in proportion.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::populate::sha256;

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Where the baselines read from and write to.
#[derive(Clone)]
pub struct Target {
    pub registry_url: String,
    /// `host:port` of the registry (written into `dockerImageReference`, used by skopeo).
    pub registry_host: String,
    pub emulator_url: String,
    pub token: String,
}

/// The mapping body both baselines POST: what the server needs to store the tag event.
fn mapping_body(
    target: &Target,
    repo: &str,
    tag: &str,
    digest: &str,
    manifest: &Value,
    config: &Value,
    config_len: usize,
) -> (String, Value) {
    let (namespace, stream) = repo.split_once('/').unwrap_or(("", repo));
    let layers: Vec<Value> = manifest["layers"]
        .as_array()
        .map(|ls| {
            ls.iter()
                .map(|l| json!({"name": l["digest"], "size": l["size"], "mediaType": l["mediaType"]}))
                .collect()
        })
        .unwrap_or_default();
    let size = config_len as u64
        + manifest["layers"]
            .as_array()
            .map(|ls| ls.iter().filter_map(|l| l["size"].as_u64()).sum::<u64>())
            .unwrap_or(0);
    let body = json!({
        "apiVersion": "image.openshift.io/v1",
        "kind": "ImageStreamMapping",
        "metadata": {"name": stream, "namespace": namespace},
        "tag": tag,
        "image": {
            "metadata": {"name": digest,
                         "annotations": {"image.openshift.io/dockerLayersOrder": "ascending"}},
            "dockerImageReference": format!("{}/{repo}@{digest}", target.registry_host),
            "dockerImageMetadata": {
                "kind": "DockerImage", "apiVersion": "image.openshift.io/1.0",
                "Id": manifest["config"]["digest"], "Created": config["created"],
                "Architecture": config["architecture"], "Author": config["author"],
                "Config": config["config"], "Size": size,
            },
            "dockerImageMetadataVersion": "1.0",
            "dockerImageLayers": layers,
            "dockerImageManifestMediaType": manifest["mediaType"],
        },
    });
    (namespace.to_string(), body)
}

/// One push the floor way: three requests, nothing else.
async fn map_one(c: &reqwest::Client, t: &Target, repo: &str, tag: &str) -> Result<(), String> {
    let r = c
        .get(format!("{}/v2/{repo}/manifests/{tag}", t.registry_url))
        .header("accept", ACCEPT)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let header_digest = r
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = r.bytes().await.map_err(|e| e.to_string())?;
    let digest = header_digest.unwrap_or_else(|| sha256(&bytes));
    let manifest: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let config_digest = manifest["config"]["digest"].as_str().unwrap_or_default();
    let config_bytes = c
        .get(format!(
            "{}/v2/{repo}/blobs/{config_digest}",
            t.registry_url
        ))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .bytes()
        .await
        .map_err(|e| e.to_string())?;
    let config: Value = serde_json::from_slice(&config_bytes).map_err(|e| e.to_string())?;
    let (namespace, body) = mapping_body(
        t,
        repo,
        tag,
        &digest,
        &manifest,
        &config,
        config_bytes.len(),
    );
    let r = c
        .post(format!(
            "{}/apis/image.openshift.io/v1/namespaces/{namespace}/imagestreammappings",
            t.emulator_url
        ))
        .bearer_auth(&t.token)
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    if status == 201 {
        Ok(())
    } else {
        Err(format!(
            "mapping {repo}:{tag}: {status} {}",
            r.text().await.unwrap_or_default()
        ))
    }
}

/// Map every `(repo, tag)` with `concurrency` requests chains in flight; returns the wall time.
pub async fn floor(t: &Target, refs: &[(String, String)], concurrency: usize) -> Duration {
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let started = Instant::now();
    let failures: Vec<String> = futures_util::stream::iter(refs)
        .map(|(repo, tag)| map_one(&c, t, repo, tag))
        .buffer_unordered(concurrency)
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    let wall = started.elapsed();
    assert!(
        failures.is_empty(),
        "floor: {} failures, first: {}",
        failures.len(),
        failures[0]
    );
    wall
}

/// The floor's walk, as `resync` does it: catalog pages, then each repository's tags, serially.
pub async fn walk(t: &Target) -> Vec<(String, String)> {
    let c = reqwest::Client::new();
    let mut repos: Vec<String> = Vec::new();
    let mut next = Some(format!("{}/v2/_catalog?n=1000", t.registry_url));
    while let Some(url) = next.take() {
        let r = c.get(&url).send().await.expect("catalog");
        next = next_link(&r, &t.registry_url);
        let page: Value = r.json().await.expect("catalog json");
        repos.extend(
            page["repositories"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string)),
        );
    }
    let mut refs = Vec::new();
    for repo in repos {
        let mut next = Some(format!("{}/v2/{repo}/tags/list", t.registry_url));
        while let Some(url) = next.take() {
            let r = c.get(&url).send().await.expect("tags");
            next = next_link(&r, &t.registry_url);
            let page: Value = r.json().await.expect("tags json");
            for tag in page["tags"].as_array().into_iter().flatten() {
                if let Some(tag) = tag.as_str() {
                    refs.push((repo.clone(), tag.to_string()));
                }
            }
        }
    }
    refs
}

/// `Link: </v2/_catalog?last=x&n=1000>; rel="next"` → absolute URL.
fn next_link(r: &reqwest::Response, base: &str) -> Option<String> {
    let link = r.headers().get("link")?.to_str().ok()?;
    let path = link.split('<').nth(1)?.split('>').next()?;
    Some(if path.starts_with('/') {
        format!("{base}{path}")
    } else {
        path.to_string()
    })
}

/// The script: per push two `skopeo inspect` runs and one `curl`, serially. Returns per-push wall times.
pub fn script(t: &Target, refs: &[(String, String)]) -> Vec<Duration> {
    let scratch = TempDir::new().expect("script scratch");
    let skopeo = |args: &[&str]| -> Vec<u8> {
        let out = Command::new("skopeo")
            .args(args)
            .env("XDG_DATA_HOME", scratch.path().join("data"))
            .env("XDG_CONFIG_HOME", scratch.path().join("config"))
            .env("XDG_RUNTIME_DIR", scratch.path().join("run"))
            .env("_CONTAINERS_ROOTLESS_UID", "1000")
            .env("REGISTRY_AUTH_FILE", scratch.path().join("auth.json"))
            .stdin(Stdio::null())
            .output()
            .expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let mut times = Vec::new();
    for (repo, tag) in refs {
        let started = Instant::now();
        let image = format!("docker://{}/{repo}:{tag}", t.registry_host);
        let manifest_bytes = skopeo(&["inspect", "--tls-verify=false", "--raw", &image]);
        let config_bytes = skopeo(&["inspect", "--tls-verify=false", "--config", "--raw", &image]);
        let manifest: Value = serde_json::from_slice(&manifest_bytes).expect("manifest json");
        let config: Value = serde_json::from_slice(&config_bytes).expect("config json");
        let (namespace, body) = mapping_body(
            t,
            repo,
            tag,
            &sha256(&manifest_bytes),
            &manifest,
            &config,
            config_bytes.len(),
        );
        let mut curl = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
            .args(["-H", &format!("Authorization: Bearer {}", t.token)])
            .args([
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                "@-",
            ])
            .arg(format!(
                "{}/apis/image.openshift.io/v1/namespaces/{namespace}/imagestreammappings",
                t.emulator_url
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run curl");
        curl.stdin
            .take()
            .expect("curl stdin")
            .write_all(&serde_json::to_vec(&body).expect("body"))
            .expect("write body");
        let out = curl.wait_with_output().expect("curl");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "201",
            "script mapping {repo}:{tag}"
        );
        times.push(started.elapsed());
    }
    times
}
