//! Monotonic counters as a malicious Marble would use them: names at and past the length limit,
//! empty, unicode and `:`-laden names, Marble types containing `:` (no two (type, UUID, name)
//! triples share a counter), and the bounds of `u64`.

use std::path::Path;

use quarry_premain::identity::MarbleIdentity;
use quarry_testkit::coordinator::Coordinator;
use serde_json::json;

use crate::activation::{Client, SIGNER, simulated_quote};
use crate::tools::{Answer, Trust, curl, file, sealed_files};
use crate::workflow::set_manifest;

const UUID: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";

/// Activates `marble_type` and returns curl's client certificate arguments.
pub(crate) fn marble(c: &mut Coordinator, dir: &Path, marble_type: &str) -> Vec<String> {
    let client = Client::new(c);
    let id = MarbleIdentity::generate(&["localhost".into()], &[]).unwrap();
    let params = client
        .send(&id, simulated_quote(&id.report_data()), marble_type, UUID)
        .unwrap();
    // Each activation's files get their own names.
    static ACTIVATIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = ACTIVATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("{}-{n}", marble_type.replace(':', "_"));
    let chain = file(
        dir,
        &format!("{name}.chain.pem"),
        &params.env["MARBLE_PREDEFINED_MARBLE_CERTIFICATE_CHAIN"],
    );
    let key = file(
        dir,
        &format!("{name}.key.pem"),
        &params.env["MARBLE_PREDEFINED_PRIVATE_KEY"],
    );
    vec![
        "--cert".into(),
        chain.display().to_string(),
        "--key".into(),
        key.display().to_string(),
    ]
}

pub(crate) fn set(c: &Coordinator, dir: &Path, cert: &[String], name: &str, value: u64) -> Answer {
    let body = file(
        dir,
        "counter.json",
        json!({ "name": name, "value": value }).to_string(),
    );
    let cert: Vec<&str> = cert.iter().map(String::as_str).collect();
    curl(
        &Trust::Insecure,
        "POST",
        &c.url("/api/v2/monotonic-counter"),
        Some(&body),
        &cert,
    )
}

pub(crate) fn previous(answer: &Answer) -> u64 {
    answer.data()["value"].as_u64().unwrap()
}

#[test]
fn counter_names_are_bounded_and_never_shared() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = Coordinator::start(dir).unwrap();
    let manifest = json!({
        "Packages": {"pkg": {"SignerID": SIGNER, "ProductID": 3, "SecurityVersion": 2}},
        "Marbles": {"a": {"Package": "pkg"}, "a:b": {"Package": "pkg"}},
        "Config": {"FeatureGates": ["MonotonicCounter"]}
    });
    set_manifest(
        &c,
        &Trust::Insecure,
        dir,
        &serde_json::to_vec(&manifest).unwrap(),
    );
    let a = marble(&mut c, dir, "a");
    let ab = marble(&mut c, dir, "a:b");

    // Names past the limit are refused before anything is written, whatever their size.
    let before = sealed_files(&c.seal_dir());
    for len in [4097, 1 << 20] {
        let answer = set(&c, dir, &a, &"n".repeat(len), 1);
        assert_eq!(answer.status, 400, "{:?}", answer.body);
        assert_eq!(
            answer.message(),
            format!("name: {len} bytes, more than the limit of 4096")
        );
    }
    // The limit counts bytes: 2048 two-byte characters are at it, one more is past it.
    let at_limit = "é".repeat(2048);
    assert_eq!(set(&c, dir, &a, &format!("{at_limit}é"), 1).status, 400);
    assert_eq!(sealed_files(&c.seal_dir()), before);
    assert_eq!(previous(&set(&c, dir, &a, &at_limit, 1)), 0);
    assert_eq!(previous(&set(&c, dir, &a, &at_limit, 2)), 1);

    // Empty, unicode and `:` names, and u64's bounds.
    assert_eq!(previous(&set(&c, dir, &a, "", u64::MAX)), 0);
    assert_eq!(previous(&set(&c, dir, &a, "", 0)), u64::MAX);
    assert_eq!(previous(&set(&c, dir, &a, "", u64::MAX)), u64::MAX);
    assert_eq!(previous(&set(&c, dir, &a, "zähler:ü", 5)), 0);
    assert_eq!(previous(&set(&c, dir, &a, "zähler:ü", 5)), 5);

    // Type "a" with name "b:c" and type "a:b" with name "c" (same UUID) join to the same text
    // "a:b:c"; they are still two counters.
    assert_eq!(previous(&set(&c, dir, &a, "b:c", 10)), 0);
    assert_eq!(previous(&set(&c, dir, &ab, "c", 3)), 0);
    assert_eq!(previous(&set(&c, dir, &a, "b:c", 11)), 10);
    assert_eq!(previous(&set(&c, dir, &ab, "c", 4)), 3);
    // And "a:b" with name "" is not "a" with name "b:".
    assert_eq!(previous(&set(&c, dir, &a, "b:", 7)), 0);
    assert_eq!(previous(&set(&c, dir, &ab, "", 1)), 0);

    // They survive a restart as they are.
    c.restart().unwrap();
    assert_eq!(previous(&set(&c, dir, &a, "b:c", 0)), 11);
    assert_eq!(previous(&set(&c, dir, &ab, "c", 0)), 4);
    assert_eq!(previous(&set(&c, dir, &a, "", 0)), u64::MAX);
}
