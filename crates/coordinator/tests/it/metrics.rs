//! Prometheus metrics on `EDG_COORDINATOR_PROMETHEUS_ADDR` (plain HTTP): MarbleRun's names and
//! Quarry's own, parsed by a strict parser of the Prometheus text format, and `/events`; the
//! per-path Client API metrics (with 1,000 invented paths sharing one series) and the Marble
//! API's gRPC server metrics, from real requests to the real binary.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;

use quarry_enclave::Enclave;
use quarry_enclave::simulation::{Simulation, SimulationSettings};
use quarry_marble_api::ActivationReq;
use quarry_premain::client::{ServerTrust, activate_once, client_config};
use quarry_premain::identity::MarbleIdentity;
use quarry_testkit::coordinator::Coordinator;
use serde_json::json;

use crate::tools::{Trust, b64, run};
use crate::users::Deployment;
use crate::workflow::set_manifest;

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
        let family = if types.contains_key(name) {
            name
        } else {
            // A histogram's series are its family name with a suffix; buckets carry `le`.
            let (base, suffix) = name.rsplit_once('_').expect("sample without TYPE");
            assert_eq!(
                types.get(base).map(String::as_str),
                Some("histogram"),
                "sample {name} without TYPE"
            );
            assert!(["bucket", "sum", "count"].contains(&suffix), "{name}");
            assert_eq!(suffix == "bucket", labels.contains_key("le"), "{line:?}");
            base
        };
        assert!(
            types[family] != "histogram" || family != name,
            "histogram {name} sampled without a suffix"
        );
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
        "# TYPE h histogram\nh_bucket 1\n",
        "# TYPE h histogram\nh 1\n",
        "# TYPE c counter\nc_sum 1\n",
    ] {
        assert!(std::panic::catch_unwind(|| parse(bad)).is_err(), "{bad:?}");
    }
}

/// The value of the series `name` whose labels are exactly `labels` (absent: `None`).
fn series(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut found = samples.iter().filter(|(n, l, _)| n == name && *l == wanted);
    let value = found.next().map(|(_, _, v)| *v);
    assert!(found.next().is_none(), "{name} {labels:?} twice");
    value
}

/// Scrapes `/metrics` of the listener at `addr` and parses it strictly; the families `present`
/// must be there with their MarbleRun types.
fn scrape(addr: std::net::SocketAddr, present: &str) -> Vec<Sample> {
    let text = String::from_utf8(run(Command::new("curl")
        .args(["-sS", "--fail"])
        .arg(format!("http://{addr}/metrics"))))
    .unwrap();
    let (types, samples) = parse(&text);
    for (name, kind) in [
        ("server_client_api_http_request_total", "counter"),
        (
            "server_client_api_http_request_duration_histogram_seconds",
            "histogram",
        ),
        (
            "server_client_api_http_request_size_histogram_bytes",
            "histogram",
        ),
        (
            "server_client_api_http_response_size_histogram_bytes",
            "histogram",
        ),
        ("server_client_api_http_in_flight_requests", "gauge"),
        ("grpc_server_started_total", "counter"),
        ("grpc_server_handled_total", "counter"),
        ("grpc_server_msg_received_total", "counter"),
        ("grpc_server_msg_sent_total", "counter"),
    ]
    .into_iter()
    .filter(|(name, _)| name.starts_with(present))
    {
        assert_eq!(types.get(name).map(String::as_str), Some(kind), "{name}");
    }
    samples
}

/// Growth per series: (name, sorted labels) to the difference.
type Changes = BTreeMap<(String, Vec<(String, String)>), f64>;

/// How much each series of `after` grew since `before` (series new in `after` count from 0).
fn growth(before: &[Sample], after: &[Sample]) -> Changes {
    let key = |(n, l, _): &Sample| (n.clone(), l.clone().into_iter().collect::<Vec<_>>());
    let old: BTreeMap<_, f64> = before.iter().map(|s| (key(s), s.2)).collect();
    after
        .iter()
        .map(|s| (key(s), s.2 - old.get(&key(s)).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d != 0.0)
        .collect()
}

/// The growth of one series.
fn grew(changes: &Changes, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    changes
        .get(&(name.to_owned(), labels))
        .copied()
        .unwrap_or(0.0)
}

/// Runs one curl over `urls` (reusing its connection) with `method`, returning each answer's
/// status, downloaded size and body.
fn curl_many(method: &str, urls: &[String], extra: &[&str]) -> Vec<(u16, u64, String)> {
    const END: &str = "\n--end-of-answer--";
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-k", "-X", method, "-w"])
        .arg(format!("{END} %{{http_code}} %{{size_download}}\n"))
        .args(extra)
        .args(urls);
    let out = String::from_utf8(run(&mut cmd)).unwrap();
    let mut answers = Vec::new();
    let mut rest = out.as_str();
    while let Some((body, tail)) = rest.split_once(END) {
        let (meta, next) = tail.split_once('\n').unwrap();
        let mut meta = meta.split_whitespace();
        let status = meta.next().unwrap().parse().unwrap();
        let size = meta.next().unwrap().parse().unwrap();
        answers.push((status, size, body.to_owned()));
        rest = next;
    }
    assert_eq!(answers.len(), urls.len(), "{out}");
    answers
}

const HTTP_TOTAL: &str = "server_client_api_http_request_total";
const HTTP_DURATION: &str = "server_client_api_http_request_duration_histogram_seconds";
const HTTP_REQUEST_SIZE: &str = "server_client_api_http_request_size_histogram_bytes";
const HTTP_RESPONSE_SIZE: &str = "server_client_api_http_response_size_histogram_bytes";

#[test]
fn client_api_requests_are_counted_per_route_pattern_method_and_code() {
    let mut d = Deployment::start(&[("EDG_COORDINATOR_PROMETHEUS_ADDR", "127.0.0.1:0")]);
    let prometheus = d.c.service().addr("prometheus");
    let before = scrape(prometheus, "grpc_");

    let status = vec![d.c.url("/api/v2/status"); 3];
    let gets = curl_many("GET", &status, &[]);
    assert!(gets.iter().all(|(code, _, _)| *code == 200), "{gets:?}");
    let wrong_post = curl_many("POST", &[d.c.url("/api/v2/status")], &[]);
    let wrong_delete = curl_many("DELETE", &[d.c.url("/api/v2/status")], &[]);
    assert_eq!(wrong_post[0].0, 405);
    assert_eq!(wrong_delete[0].0, 405);
    let invented = curl_many("FROBNICATE", &[d.c.url("/api/v2/manifest")], &[]);
    assert_eq!(invented[0].0, 405);
    let manifest = d.call(None, "GET", "/api/v2/manifest", None);
    assert_eq!(manifest.status, 200);
    let unknown_user = d.call(Some("eve"), "GET", "/api/v2/secrets?s=user_key", None);
    assert_eq!(unknown_user.status, 401, "{:?}", unknown_user.body);

    // 1,000 invented paths: every one answered with the JSend 405, one series for all of them.
    let invented_paths: Vec<String> = (0..1000)
        .map(|i| d.c.url(&format!("/api/v2/invented-{i}/x?y={i}")))
        .collect();
    let unknown = curl_many("GET", &invented_paths, &[]);
    for (code, size, body) in &unknown {
        assert_eq!(*code, 405);
        assert_eq!(*size, body.len() as u64);
        assert!(body.ends_with('\n'), "{body:?}");
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body, json!({"status": "error", "data": null}));
    }

    let after = scrape(prometheus, "");
    let changes = growth(&before, &after);
    let total = |code: &str, method: &str, path: &str| {
        grew(
            &changes,
            HTTP_TOTAL,
            &[("code", code), ("method", method), ("path", path)],
        )
    };
    assert_eq!(total("200", "get", "/api/v2/status"), 3.0);
    assert_eq!(total("405", "post", "/api/v2/status"), 1.0);
    assert_eq!(total("405", "delete", "/api/v2/status"), 1.0);
    assert_eq!(total("405", "other", "/api/v2/manifest"), 1.0);
    assert_eq!(total("200", "get", "/api/v2/manifest"), 1.0);
    assert_eq!(total("401", "get", "/api/v2/secrets"), 1.0);
    assert_eq!(total("405", "get", "unknown"), 1000.0);
    let counted: f64 = changes
        .iter()
        .filter(|((name, _), _)| name == HTTP_TOTAL)
        .map(|(_, d)| d)
        .sum();
    assert_eq!(counted, 1008.0, "nothing else was counted: {changes:?}");

    // Histograms: counts per series, `+Inf` equal to the count, buckets cumulative.
    let count =
        |name: &str, labels: &[(&str, &str)]| grew(&changes, &format!("{name}_count"), labels);
    let status_get = [("method", "get"), ("path", "/api/v2/status")];
    assert_eq!(count(HTTP_DURATION, &status_get), 3.0);
    assert_eq!(
        count(HTTP_DURATION, &[("method", "get"), ("path", "unknown")]),
        1000.0
    );
    assert_eq!(count(HTTP_REQUEST_SIZE, &[("path", "/api/v2/status")]), 5.0);
    assert_eq!(count(HTTP_REQUEST_SIZE, &[("path", "unknown")]), 1000.0);
    assert_eq!(
        count(HTTP_RESPONSE_SIZE, &[("path", "/api/v2/status")]),
        5.0
    );
    // The response sizes are the body bytes the clients received.
    let status_bytes: u64 = gets
        .iter()
        .chain(&wrong_post)
        .chain(&wrong_delete)
        .map(|(_, size, _)| size)
        .sum();
    assert_eq!(
        grew(
            &changes,
            &format!("{HTTP_RESPONSE_SIZE}_sum"),
            &[("path", "/api/v2/status")]
        ),
        status_bytes as f64
    );
    let unknown_bytes: u64 = unknown.iter().map(|(_, size, _)| size).sum();
    assert_eq!(
        grew(
            &changes,
            &format!("{HTTP_RESPONSE_SIZE}_sum"),
            &[("path", "unknown")]
        ),
        unknown_bytes as f64
    );
    assert_eq!(
        grew(
            &changes,
            &format!("{HTTP_RESPONSE_SIZE}_bucket"),
            &[("le", "100"), ("path", "unknown")]
        ),
        1000.0
    );
    let buckets = |name: &str, labels: &[(&str, &str)]| -> Vec<(String, f64)> {
        after
            .iter()
            .filter(|(n, l, _)| {
                *n == format!("{name}_bucket")
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).is_some_and(|x| x == v))
            })
            .map(|(_, l, v)| (l["le"].clone(), *v))
            .collect()
    };
    let duration = buckets(HTTP_DURATION, &status_get);
    let bounds: Vec<&str> = duration.iter().map(|(le, _)| le.as_str()).collect();
    assert_eq!(
        bounds,
        ["0.005", "0.025", "0.1", "0.5", "1", "2.5", "5", "+Inf"]
    );
    let sizes = buckets(HTTP_REQUEST_SIZE, &[("path", "/api/v2/status")]);
    let bounds: Vec<&str> = sizes.iter().map(|(le, _)| le.as_str()).collect();
    assert_eq!(bounds, ["100", "1000", "2000", "5000", "10000", "+Inf"]);
    for histogram in [duration, sizes] {
        assert!(
            histogram.windows(2).all(|w| w[0].1 <= w[1].1),
            "{histogram:?}"
        );
    }
    assert_eq!(
        series(&after, &format!("{HTTP_DURATION}_count"), &status_get),
        buckets(HTTP_DURATION, &status_get).last().map(|b| b.1)
    );

    // Nothing is in flight once the answers are in; no series names an invented path.
    for (name, labels, value) in &after {
        if name == "server_client_api_http_in_flight_requests" {
            assert_eq!(*value, 0.0, "{labels:?}");
        }
        if let Some(path) = labels.get("path") {
            assert!(path == "unknown" || path.starts_with('/'), "{path}");
            assert!(!path.contains("invented"), "{path}");
        }
    }
    let paths: std::collections::BTreeSet<&str> = after
        .iter()
        .filter_map(|(_, l, _)| l.get("path").map(String::as_str))
        .collect();
    assert!(paths.len() < 30, "{paths:?}");
}

const SIGNER: &str = "abababababababababababababababababababababababababababababababab";

/// An activation request for `marble_type` with a simulated quote bound to `identity`.
fn activation(identity: &MarbleIdentity, marble_type: &str) -> ActivationReq {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = SimulationSettings::new(dir.path());
    settings.identity.mrsigner = hex_signer();
    settings.identity.isv_prod_id = 3;
    settings.identity.isv_svn = 2;
    let sim = Simulation::new(settings).unwrap();
    let quote = sim.quote(&identity.report_data()).unwrap();
    ActivationReq {
        quote: quarry_enclave::quote::with_open_enclave_header(&quote),
        csr: identity.csr_der().to_vec(),
        marble_type: marble_type.to_owned(),
        uuid: "6ba7b810-9dad-11d1-80b4-00c04fd430c8".to_owned(),
    }
}

fn hex_signer() -> [u8; 32] {
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&SIGNER[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}

#[test]
fn marble_activations_are_counted_in_the_grpc_server_metrics_with_their_code() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = Coordinator::start_with(dir, &[("EDG_COORDINATOR_PROMETHEUS_ADDR", "127.0.0.1:0")])
        .unwrap();
    let prometheus = c.service().addr("prometheus");
    let marble_api = c.service().addr("marble_api").to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let identity = MarbleIdentity::generate(&["localhost".into()], &[]).unwrap();
    let tls = Arc::new(client_config(&identity, &ServerTrust::Unverified).unwrap());
    let activate = |request: ActivationReq| {
        runtime.block_on(activate_once(&marble_api, Arc::clone(&tls), request))
    };
    let activate_labels = [
        ("grpc_method", "Activate"),
        ("grpc_service", "rpc.Marble"),
        ("grpc_type", "unary"),
    ];
    let handled = |samples: &[Sample], code: &str| {
        let mut labels = activate_labels.to_vec();
        labels.push(("grpc_code", code));
        series(samples, "grpc_server_handled_total", &labels)
    };

    // The served method's series exist from start, at 0.
    let start = scrape(prometheus, "grpc_");
    assert_eq!(
        series(&start, "grpc_server_started_total", &activate_labels),
        Some(0.0)
    );
    assert_eq!(handled(&start, "OK"), Some(0.0));
    assert_eq!(handled(&start, "Unauthenticated"), Some(0.0));

    // Before the manifest: refused with FailedPrecondition.
    let refused = activate(activation(&identity, "app")).unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    let manifest = json!({
        "Packages": {"pkg": {"SignerID": SIGNER, "ProductID": 3, "SecurityVersion": 2}},
        "Marbles": {"app": {"Package": "pkg"}}
    });
    set_manifest(
        &c,
        &Trust::Insecure,
        dir,
        &serde_json::to_vec(&manifest).unwrap(),
    );
    activate(activation(&identity, "app")).unwrap();
    activate(activation(&identity, "app")).unwrap();
    let unknown = activate(activation(&identity, "nope")).unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::PermissionDenied);

    let after = scrape(prometheus, "grpc_");
    let value = |name: &str| series(&after, name, &activate_labels);
    assert_eq!(value("grpc_server_started_total"), Some(4.0));
    assert_eq!(value("grpc_server_msg_received_total"), Some(4.0));
    assert_eq!(value("grpc_server_msg_sent_total"), Some(2.0));
    assert_eq!(handled(&after, "OK"), Some(2.0));
    assert_eq!(handled(&after, "FailedPrecondition"), Some(1.0));
    assert_eq!(handled(&after, "PermissionDenied"), Some(1.0));
    let all_handled: f64 = after
        .iter()
        .filter(|(n, _, _)| n == "grpc_server_handled_total")
        .map(|(_, _, v)| v)
        .sum();
    assert_eq!(all_handled, 4.0);
    // Calls to 50 invented methods (sent with curl over HTTP/2) share one set of series. They
    // carry no message: the server answers an unknown method without reading the request, and
    // a body still in flight then ends in a stream reset that curl reports as an error.
    let key = crate::users::user_cert(dir, "caller", false);
    let mut curl = Command::new("curl");
    curl.args([
        "-sS",
        "-k",
        "--http2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}\n",
    ])
    .arg("--cert")
    .arg(&key.cert)
    .arg("--key")
    .arg(&key.key)
    .args([
        "-X",
        "POST",
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
    ])
    .arg(format!("https://{marble_api}/rpc.Marble/Invented[1-50]"));
    let codes = String::from_utf8(run(&mut curl)).unwrap();
    assert_eq!(codes.lines().filter(|l| *l == "200").count(), 50, "{codes}");
    let unknown = [
        ("grpc_method", "unknown"),
        ("grpc_service", "unknown"),
        ("grpc_type", "unknown"),
    ];
    let last = scrape(prometheus, "grpc_");
    assert_eq!(
        series(&last, "grpc_server_started_total", &unknown),
        Some(50.0)
    );
    let mut unimplemented = unknown.to_vec();
    unimplemented.push(("grpc_code", "Unimplemented"));
    assert_eq!(
        series(&last, "grpc_server_handled_total", &unimplemented),
        Some(50.0)
    );
    assert_eq!(
        series(&last, "grpc_server_started_total", &activate_labels),
        Some(4.0)
    );
    assert!(
        last.iter()
            .all(|(_, labels, _)| labels.values().all(|v| !v.contains("Invented"))),
        "an invented method has its own series"
    );

    // The Coordinator's own activation counters agree.
    assert_eq!(
        value_of(&after, "coordinator_marble_activations_success_total"),
        2.0
    );
}

/// The sum of every series of `name`.
fn value_of(samples: &[Sample], name: &str) -> f64 {
    samples
        .iter()
        .filter(|(n, _, _)| n == name)
        .map(|(_, _, v)| v)
        .sum()
}
