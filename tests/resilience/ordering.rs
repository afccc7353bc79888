//! Ordering and idempotency (SPEC §1, §4): replayed, re-identified and late notifications never add a
//! second event for an image nor move a tag backwards; two replicas notified by one registry converge to
//! exactly what one daemon produces.

use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

use crate::env::{
    self, CLUSTER_TOKEN, Env, EnvOptions, NAMESPACE, NotifyTo, images_of, metric, metrics_of,
    with_new_id,
};
use crate::net::TwoEndpointRegistry;
use crate::support::daemon::{Daemon, free_port};
use crate::support::emulator;
use crate::support::images::{Format, OciLayout, registry_manifest, run_skopeo, skopeo_copy};

const WAIT: Duration = Duration::from_secs(60);
const UNCHANGED: &str = "imagestream_ingest_jobs_total{outcome=\"unchanged\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_and_re_identified_notifications_keep_two_events_with_the_newest_last_pushed() {
    let env = Env::start(EnvOptions {
        notify: NotifyTo::Recorder,
        ..EnvOptions::default()
    })
    .await;
    let recorder = env.recorder.as_ref().unwrap();
    // The registry's deliveries pass through the recorder to the daemon (its answers go back to the registry).
    recorder.forward_to(&env.daemon.url());
    let a = env.push("order image A", "team/order:t");
    env.wait("A mapped", WAIT, || async {
        env.event_images("order", "t") == vec![a.clone()]
    })
    .await;
    let b = env.push("order image B", "team/order:t");
    env.wait("B mapped", WAIT, || async {
        env.event_images("order", "t").len() == 2
    })
    .await;
    env.wait_idle(WAIT).await;
    let posts = env.emulator.mapping_posts();

    let a_original = recorder
        .push_of("team/order", "t", &a)
        .expect("A's notification");
    let b_original = recorder
        .push_of("team/order", "t", &b)
        .expect("B's notification");
    let replay = env.notify(&a_original).await.unwrap();
    assert_eq!(replay.status, 200, "A's original id again is a duplicate");
    let renewed = env.notify(&with_new_id(&a_original)).await.unwrap();
    assert_eq!(
        renewed.status, 202,
        "A's notification with a new id is queued"
    );
    let replay_b = env.notify(&b_original).await.unwrap();
    assert_eq!(replay_b.status, 200, "B's original id again is a duplicate");

    env.wait("the re-identified job to end unchanged", WAIT, || async {
        metric(&env.metrics().await, UNCHANGED) == Some(1.0)
    })
    .await;
    env.wait_idle(WAIT).await;
    assert_eq!(
        env.event_images("order", "t"),
        vec![b, a],
        "exactly two events, newest B"
    );
    assert_eq!(
        env.emulator.mapping_posts(),
        posts,
        "nothing more was posted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_push_notified_after_the_tag_moved_maps_the_current_image_only() {
    let env = Env::start(EnvOptions {
        notify: NotifyTo::Recorder,
        ..EnvOptions::default()
    })
    .await;
    let recorder = env.recorder.as_ref().unwrap();
    let a = env.push("late image A", "team/late:t");
    let b = env.push("late image B", "team/late:t");
    env.wait("both pushes notified", WAIT, || async {
        recorder.push_of("team/late", "t", &a).is_some()
            && recorder.push_of("team/late", "t", &b).is_some()
    })
    .await;
    let a_body = recorder.push_of("team/late", "t", &a).unwrap();
    let b_body = recorder.push_of("team/late", "t", &b).unwrap();

    assert_eq!(env.notify(&a_body).await.unwrap().status, 202);
    env.wait("the tag mapped", WAIT, || async {
        !env.events("late", "t").is_empty()
    })
    .await;
    env.wait_idle(WAIT).await;
    assert_eq!(
        env.event_images("late", "t"),
        vec![b.clone()],
        "A's notification maps what the tag holds now: B"
    );
    assert_eq!(env.notify(&b_body).await.unwrap().status, 202);
    env.wait("B's own notification to end unchanged", WAIT, || async {
        metric(&env.metrics().await, UNCHANGED) == Some(1.0)
    })
    .await;
    env.wait_idle(WAIT).await;
    assert_eq!(
        env.event_images("late", "t"),
        vec![b],
        "B only, A never newest"
    );
    assert!(env.emulator.image(&a).is_none(), "A was never written");
}

/// distribution 2.8 sends the manifest `push` event before it links the tag (the event fires from the
/// manifest store's Put; the handler tags afterwards), so a fast daemon can read the tag's previous image.
/// Reproduced deterministically: B is stored by digest, the push event for `t`@B is delivered, and only then
/// is `t` moved to B. The pushed image must still end up newest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_notified_before_the_registry_moved_the_tag_is_still_mapped() {
    let env = Env::start(EnvOptions {
        notify: NotifyTo::Recorder,
        ..EnvOptions::default()
    })
    .await;
    let a = env.push("race image A", "team/race:t");
    let a_body = env.push_notification("team/race", "t");
    assert_eq!(env.notify(&a_body).await.unwrap().status, 202);
    env.wait("A mapped", WAIT, || async {
        env.event_images("race", "t") == vec![a.clone()]
    })
    .await;

    let built = env
        .layout
        .add_image("raceb", "amd64", "linux", None, &[b"race image B"]);
    let b = built.manifest_digest.clone();
    tokio::task::block_in_place(|| {
        skopeo_copy(
            &env.layout,
            "raceb",
            &env.registry,
            &format!("team/race@{b}"),
            Format::Oci,
            false,
        )
    });
    let (bytes, media_type, digest) =
        tokio::task::block_in_place(|| registry_manifest(&env.registry, "team/race", &b));
    assert_eq!(digest, b);
    let event =
        env::distribution_push_event(&env.registry.host, "team/race", "t", &bytes, &media_type);
    let body = serde_json::to_vec(&serde_json::json!({ "events": [event] })).unwrap();
    assert_eq!(env.notify(&body).await.unwrap().status, 202);
    // The registry links the tag a moment after it sent the event.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let put = env
        .http
        .put(format!("{}/v2/team/race/manifests/t", env.registry.url))
        .header("content-type", &media_type)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 201);
    env.wait(
        "the pushed image B to become newest on t",
        Duration::from_secs(30),
        || async { env.event_images("race", "t").first() == Some(&b) },
    )
    .await;
    env.wait_idle(WAIT).await;
    assert_eq!(env.event_images("race", "t"), vec![b, a]);
}

/// Two daemons sharing only the registry (which notifies both) and the cluster.
struct Replicas {
    emulator: emulator::Emulator,
    registry: TwoEndpointRegistry,
    daemons: [Daemon; 2],
    layout: OciLayout,
    http: reqwest::Client,
    _dir: TempDir,
}

impl Replicas {
    async fn start() -> Replicas {
        let dir = TempDir::new().unwrap();
        let emulator = emulator::start().await;
        emulator.add_namespace(NAMESPACE);
        emulator.add_token(
            CLUSTER_TOKEN,
            "system:serviceaccount:ingest:imagestream-ingest",
            &env::daemon_grants(NAMESPACE),
        );
        let kubeconfig = emulator.write_kubeconfig(dir.path(), CLUSTER_TOKEN);
        let ports = [free_port(), free_port()];
        let urls = ports.map(|p| format!("http://127.0.0.1:{p}/notify/reg"));
        let registry = TwoEndpointRegistry::start([&urls[0], &urls[1]]).await;
        let config = env::daemon_config(
            &format!("http://{}", registry.host),
            &registry.host,
            &kubeconfig,
            "  concurrency: 4\n  maxAttempts: 20\n",
            "",
        );
        let a = Daemon::start(&dir.path().join("a"), ports[0], &config).await;
        let b = Daemon::start(&dir.path().join("b"), ports[1], &config).await;
        let layout = OciLayout::new(&dir.path().join("layout"));
        Replicas {
            emulator,
            registry,
            daemons: [a, b],
            layout,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    /// Push a one-layer image to `team/rep:<tag>`; returns the digest the registry serves for the tag.
    async fn push(&self, content: &str, tag: &str) -> String {
        let layout_tag = format!(
            "l{}",
            &hex::encode(Sha256::digest(content.as_bytes()))[..16]
        );
        tokio::task::block_in_place(|| {
            self.layout
                .add_image(&layout_tag, "amd64", "linux", None, &[content.as_bytes()]);
            let args: Vec<String> = vec![
                "--insecure-policy".into(),
                "copy".into(),
                "--format".into(),
                "oci".into(),
                "--dest-tls-verify=false".into(),
                format!("oci:{}:{layout_tag}", self.layout.dir.display()),
                format!("docker://{}/team/rep:{tag}", self.registry.host),
            ];
            let (ok, out) = run_skopeo(&args);
            assert!(ok, "skopeo: {out}\n{}", self.registry.log());
        });
        let bytes = self
            .http
            .get(format!(
                "http://{}/v2/team/rep/manifests/{tag}",
                self.registry.host
            ))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
    }

    /// Both daemons ran a job that resolved `rep:<tag>` to `digest` and have nothing pending. (Counting
    /// notifications is not enough: the registry re-sends an event whose answer took over its 2 s timeout.)
    async fn wait_both_processed(&self, tag: &str, digest: &str) {
        let ok = env::eventually(WAIT, || async {
            for d in &self.daemons {
                let m = metrics_of(&self.http, &d.url()).await;
                if !job_finished_with(&d.log(), tag, digest)
                    || metric(&m, "imagestream_ingest_queue_depth") != Some(0.0)
                {
                    return false;
                }
            }
            true
        })
        .await;
        assert!(
            ok,
            "both daemons processed {tag}@{digest}\n--- a ---\n{}\n--- b ---\n{}\n--- registry ---\n{}",
            finished_jobs(&self.daemons[0].log()),
            finished_jobs(&self.daemons[1].log()),
            env::tail(&self.registry.log(), 40)
        );
    }

    fn events(&self, tag: &str) -> Vec<String> {
        images_of(&self.emulator.tag_events(NAMESPACE, "rep", tag))
    }
}

/// The "job finished" lines of a daemon log (what each job resolved its tag to, and its outcome).
fn finished_jobs(log: &str) -> String {
    log.lines()
        .filter(|l| l.contains("\"job finished\""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The daemon logged a finished job for `rep:<tag>` that resolved the tag to `digest`.
fn job_finished_with(log: &str, tag: &str, digest: &str) -> bool {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|v| v["message"] == "job finished" && v["tag"] == tag && v["digest"] == digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_notified_by_one_registry_produce_exactly_what_one_daemon_would() {
    let reps = Replicas::start().await;
    let plan = ["r1", "r2", "r3", "mv", "r1", "mv", "r2", "mv", "r3", "mv"];
    let mut pushed: Vec<(&str, String)> = Vec::new();
    for (i, tag) in plan.iter().enumerate() {
        let digest = reps.push(&format!("replica image {i}"), tag).await;
        reps.wait_both_processed(tag, &digest).await;
        pushed.push((tag, digest));
    }
    for tag in ["r1", "r2", "r3", "mv"] {
        let mut expected: Vec<String> = pushed
            .iter()
            .filter(|(t, _)| *t == tag)
            .map(|(_, d)| d.clone())
            .collect();
        expected.reverse();
        assert_eq!(
            reps.events(tag),
            expected,
            "{tag}: one event per pushed image, newest last pushed"
        );
    }
    let mut unchanged = 0.0;
    for d in &reps.daemons {
        unchanged += metric(&metrics_of(&reps.http, &d.url()).await, UNCHANGED).unwrap_or(0.0);
    }
    println!(
        "[replicas] 10 pushes over 4 tags: {} mapping POSTs, {unchanged} jobs unchanged across both daemons",
        reps.emulator.mapping_posts()
    );

    // A burst without waiting: the tag may skip images but never goes backwards nor repeats one.
    let mut burst = Vec::new();
    for i in 0..3 {
        burst.push(reps.push(&format!("replica burst {i}"), "mv").await);
    }
    reps.wait_both_processed("mv", burst.last().unwrap()).await;
    let events = reps.events("mv");
    assert_eq!(events.first(), burst.last(), "newest is the last pushed");
    let order: Vec<&String> = pushed
        .iter()
        .filter(|(t, _)| *t == "mv")
        .map(|(_, d)| d)
        .chain(&burst)
        .collect();
    let positions: Vec<usize> = events
        .iter()
        .map(|e| {
            order
                .iter()
                .position(|d| *d == e)
                .expect("only pushed images")
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] > w[1]),
        "mv events follow push order without repeats: {positions:?}"
    );
}
