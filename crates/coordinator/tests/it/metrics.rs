//! Prometheus metrics on `EDG_COORDINATOR_PROMETHEUS_ADDR` (plain HTTP): MarbleRun's names and
//! Quarry's own, parsed by a strict parser of the Prometheus text format, and `/events`.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::json;

use crate::tools::{b64, run};
use crate::users::Deployment;

/// One sample: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the Prometheus text format strictly: `# HELP` and `# TYPE` lines before a family's
/// samples, samples of declared families only, quoted label values, float values.
fn parse(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _help) = rest.split_once(' ').expect("HELP has a name and a text");
            assert!(valid_name(name), "bad metric name {name:?}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a name and a type");
            assert!(valid_name(name), "bad metric name {name:?}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "bad type {kind:?}"
            );
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "{name} twice"
            );
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment {line:?}");
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                let mut labels = BTreeMap::new();
                for pair in split_labels(body) {
                    let (k, v) = pair.split_once('=').expect("label is k=\"v\"");
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .expect("quoted");
                    labels.insert(k.to_owned(), v.to_owned());
                }
                (name, labels)
            }
        };
        assert!(valid_name(name), "bad sample name {name:?}");
        assert!(types.contains_key(name), "sample {name} without TYPE");
        samples.push((name.to_owned(), labels, value));
    }
    (types, samples)
}

fn split_labels(body: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in body.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < body.len() {
        parts.push(&body[start..]);
    }
    parts
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn value(samples: &[Sample], name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| n == name && label.is_none_or(|(k, v)| l.get(k).is_some_and(|x| x == v)))
        .map(|(_, _, v)| *v)
}

#[test]
fn metrics_use_marbleruns_names_and_count_user_operations() {
    let mut d = Deployment::start(&[("EDG_COORDINATOR_PROMETHEUS_ADDR", "127.0.0.1:0")]);
    let addr = d.c.service().addr("prometheus");
    let scrape = |path: &str| {
        String::from_utf8(run(Command::new("curl")
            .args(["-sS", "--fail"])
            .arg(format!("http://{addr}{path}"))))
        .unwrap()
    };
    let (types, samples) = parse(&scrape("/metrics"));
    assert_eq!(types["coordinator_state"], "gauge");
    assert_eq!(types["coordinator_version_info"], "gauge");
    assert_eq!(types["quarry_hsm_key_releases_total"], "counter");
    assert_eq!(value(&samples, "coordinator_state", None), Some(3.0));
    assert_eq!(
        value(&samples, "quarry_hsm_key_releases_total", None),
        Some(0.0)
    );
    let before = value(
        &samples,
        "quarry_coordinator_user_operations_total",
        Some(("operation", "secrets_set")),
    )
    .unwrap_or(0.0);

    let answer = d.call(
        Some("bob"),
        "POST",
        "/api/v2/secrets",
        Some(json!({"secrets": {"user_key": {"Key": b64(&[3u8; 16])}}})),
    );
    assert_eq!(answer.status, 200);
    let (_, samples) = parse(&scrape("/metrics"));
    assert_eq!(
        value(
            &samples,
            "quarry_coordinator_user_operations_total",
            Some(("operation", "secrets_set"))
        ),
        Some(before + 1.0)
    );
    let events: serde_json::Value = serde_json::from_str(&scrape("/events")).unwrap();
    assert!(events.is_array());
}

#[test]
fn the_parser_refuses_what_is_not_the_text_format() {
    for bad in [
        "x 1\n",
        "# TYPE x counter\nx{a=b} 1\n",
        "# TYPE x counter\nx one\n",
        "# TYPE 1x counter\n",
    ] {
        assert!(std::panic::catch_unwind(|| parse(bad)).is_err(), "{bad:?}");
    }
}
