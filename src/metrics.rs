//! Typed Prometheus metrics (SPEC §8) over a `prometheus-client` registry.
//!
//! Every label value comes from a closed set: configured names (sources, registries) or `&'static str`
//! outcomes/operations chosen in code. Never build a label from an error's text.

use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    pub source: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryLabels {
    pub registry: String,
    pub op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub op: &'static str,
    pub code: &'static str,
}

/// All metrics the daemon exports.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// `imagestream_ingest_notifications_total{source,outcome}`; outcomes: queued, duplicate, ignored,
    /// unauthorized, too_large, malformed, unavailable, method_not_allowed.
    pub notifications: Family<NotificationLabels, Counter>,
    /// `imagestream_ingest_jobs_total{outcome}`; outcomes: created, unchanged, ignored, dead, retry.
    pub jobs: Family<OutcomeLabels, Counter>,
    /// Jobs ignored, by reason (closed set chosen in code).
    pub ignored: Family<ReasonLabels, Counter>,
    /// Tag deletions seen (recorded, not propagated).
    pub tag_deletes: Counter,
    /// Digest mismatches detected on manifests or blobs.
    pub digest_mismatches: Counter,
    pub queue_depth: Gauge,
    pub dead_letters: Gauge,
    pub registry_request_duration: Family<RegistryLabels, Histogram>,
    pub cluster_request_duration: Family<ClusterLabels, Histogram>,
    pub event_to_mapping: Histogram,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.5, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("imagestream_ingest");
        let notifications = Family::<NotificationLabels, Counter>::default();
        let jobs = Family::<OutcomeLabels, Counter>::default();
        let ignored = Family::<ReasonLabels, Counter>::default();
        let tag_deletes = Counter::default();
        let digest_mismatches = Counter::default();
        let queue_depth = Gauge::default();
        let dead_letters = Gauge::default();
        let registry_request_duration = Family::<RegistryLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let cluster_request_duration = Family::<ClusterLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let event_to_mapping = Histogram::new(exponential_buckets(0.005, 2.0, 14));

        registry.register(
            "notifications",
            "Notifications received, by source and outcome",
            notifications.clone(),
        );
        registry.register("jobs", "Jobs finished, by outcome", jobs.clone());
        registry.register("ignored_jobs", "Jobs ignored, by reason", ignored.clone());
        registry.register(
            "tag_deletes",
            "Tag deletions seen (not propagated)",
            tag_deletes.clone(),
        );
        registry.register(
            "digest_mismatches",
            "Manifests or blobs whose bytes did not match their digest",
            digest_mismatches.clone(),
        );
        registry.register(
            "queue_depth",
            "Jobs waiting or running",
            queue_depth.clone(),
        );
        registry.register(
            "dead_letters",
            "Jobs in the dead-letter table",
            dead_letters.clone(),
        );
        registry.register(
            "registry_request_duration_seconds",
            "Registry request latency, by registry and operation",
            registry_request_duration.clone(),
        );
        registry.register(
            "cluster_request_duration_seconds",
            "Cluster API request latency, by operation and HTTP status",
            cluster_request_duration.clone(),
        );
        registry.register(
            "event_to_mapping_seconds",
            "Time from accepting a notification to its mapping being written",
            event_to_mapping.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            notifications,
            jobs,
            ignored,
            tag_deletes,
            digest_mismatches,
            queue_depth,
            dead_letters,
            registry_request_duration,
            cluster_request_duration,
            event_to_mapping,
        }
    }

    pub fn notification(&self, source: &str, outcome: &'static str) {
        self.notifications
            .get_or_create(&NotificationLabels {
                source: source.to_string(),
                outcome,
            })
            .inc();
    }

    pub fn job(&self, outcome: &'static str) {
        self.jobs.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn observe_registry(&self, registry: &str, op: &'static str, started: Instant) {
        self.registry_request_duration
            .get_or_create(&RegistryLabels {
                registry: registry.to_string(),
                op,
            })
            .observe(started.elapsed().as_secs_f64());
    }

    pub fn observe_cluster(&self, op: &'static str, code: &'static str, started: Instant) {
        self.cluster_request_duration
            .get_or_create(&ClusterLabels { op, code })
            .observe(started.elapsed().as_secs_f64());
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = match self.registry.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Encoding into a String cannot fail except on fmt errors, which String never returns.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// A fixed label for an HTTP status code from the cluster (closed set).
pub fn status_code_label(code: u16) -> &'static str {
    match code {
        200 => "200",
        201 => "201",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        409 => "409",
        422 => "422",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        100..=199 => "1xx",
        202..=299 => "2xx",
        300..=399 => "3xx",
        402..=499 => "4xx",
        _ => "5xx",
    }
}
