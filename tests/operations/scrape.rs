//! Parsing an OpenMetrics scrape and checking its label values.

use std::collections::{BTreeMap, BTreeSet};

/// One scrape, parsed: samples and the `# TYPE` of every family.
pub(crate) struct Metrics {
    pub(crate) text: String,
    pub(crate) samples: Vec<(String, BTreeMap<String, String>, f64)>,
    pub(crate) types: BTreeMap<String, String>,
}

impl Metrics {
    pub(crate) fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if let Some(t) = line.strip_prefix("# TYPE ") {
                let (name, kind) = t.split_once(' ').expect("TYPE line");
                types.insert(name.to_string(), kind.to_string());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}').expect("labels")),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once("=\"").expect("label");
                    (k.to_string(), v.trim_end_matches('"').to_string())
                })
                .collect();
            let value = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().expect("sample value"),
            };
            samples.push((name.to_string(), labels, value));
        }
        Metrics {
            text: text.to_string(),
            samples,
            types,
        }
    }

    /// Sum of the samples of `name` whose labels include `want`.
    pub(crate) fn get(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, labels, _)| {
                n == &format!("imagestream_ingest_{name}")
                    && want
                        .iter()
                        .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    /// Exported sample names as an operator queries them (`jobs_total`, `queue_depth`, `x_seconds`).
    pub(crate) fn documented_names(&self) -> BTreeSet<String> {
        self.types
            .iter()
            .map(|(family, kind)| {
                let short = family.trim_start_matches("imagestream_ingest_");
                match kind.as_str() {
                    "counter" => format!("{short}_total"),
                    _ => short.to_string(),
                }
            })
            .collect()
    }
}

/// Label values from closed sets only: configured names, or outcomes/ops/codes chosen in code.
pub(crate) fn assert_labels_from_fixed_sets(m: &Metrics) {
    let set = |s: &[&str]| {
        s.iter()
            .map(|v| v.to_string())
            .collect::<BTreeSet<String>>()
    };
    let allowed: BTreeMap<&str, BTreeSet<String>> = BTreeMap::from([
        ("source", set(&["reg"])),
        ("registry", set(&["reg"])),
        (
            "outcome",
            set(&[
                "queued",
                "duplicate",
                "ignored",
                "tag_deleted",
                "unauthorized",
                "too_large",
                "malformed",
                "unavailable",
                "method_not_allowed",
                "created",
                "unchanged",
                "dead",
                "retry",
                "dry_run",
            ]),
        ),
        (
            "op",
            set(&[
                "manifest",
                "blob",
                "token",
                "catalog",
                "tags",
                "get_stream",
                "create_mapping",
                "create_stream",
                "create_image",
                "ping",
            ]),
        ),
        (
            "code",
            set(&[
                "200", "201", "400", "401", "403", "404", "409", "422", "429", "500", "502", "503",
                "504", "1xx", "2xx", "3xx", "4xx", "5xx", "error",
            ]),
        ),
    ]);
    for (name, labels, _) in &m.samples {
        for (k, v) in labels {
            match (k.as_str(), allowed.get(k.as_str())) {
                ("le", _) => assert!(v == "+Inf" || v.parse::<f64>().is_ok(), "{name} le={v}"),
                ("reason", _) => assert!(
                    !v.is_empty() && v.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                    "{name} reason={v} is not a fixed label"
                ),
                (_, Some(values)) => {
                    assert!(values.contains(v), "{name}: {k}={v} is not in {values:?}")
                }
                (_, None) => panic!("{name} has an unexpected label {k}={v}"),
            }
        }
    }
}

/// `imagestream_ingest_*` names used in a text (PromQL in the README and the PrometheusRule).
pub(crate) fn metric_names_in(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"imagestream_ingest_([a-z_]+)").unwrap();
    re.captures_iter(text).map(|c| c[1].to_string()).collect()
}
