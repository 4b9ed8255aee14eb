//! Metrics as a network attacker would feed them: activation attempts with invented or huge
//! Marble types and UUIDs (anyone can send them to the Marble API) add no series, and `/events`
//! lists only successful activations.

use quarry_premain::identity::MarbleIdentity;
use quarry_testkit::coordinator::Coordinator;
use serde_json::json;

use crate::activation::{Client, SIGNER, simulated_quote};
use crate::tools::{Trust, run};
use crate::workflow::set_manifest;

fn get(addr: std::net::SocketAddr, path: &str) -> String {
    String::from_utf8(run(std::process::Command::new("curl")
        .args(["-sS", "--fail"])
        .arg(format!("http://{addr}{path}"))))
    .unwrap()
}

/// The value of the sample line starting with `series` (name and labels as printed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn invented_activation_labels_add_no_series() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = Coordinator::start_with(dir, &[("EDG_COORDINATOR_PROMETHEUS_ADDR", "127.0.0.1:0")])
        .unwrap();
    let prometheus = c.service().addr("prometheus");
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
    let client = Client::new(&mut c);
    let identity = MarbleIdentity::generate(&["localhost".into()], &[]).unwrap();
    let quote = simulated_quote(&identity.report_data());

    let huge = "x".repeat(100_000);
    let uuid = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
    for (marble_type, id) in [
        (huge.as_str(), uuid),
        ("app", "junk-uuid"),
        ("nope", "0123"),
    ] {
        let refused = client
            .send(&identity, quote.clone(), marble_type, id)
            .unwrap_err();
        assert_ne!(refused.code(), tonic::Code::Ok);
    }
    client.send(&identity, quote.clone(), "app", uuid).unwrap();

    let text = get(prometheus, "/metrics");
    assert!(!text.contains("xxxxxxxx"), "a huge type became a label");
    assert!(!text.contains("junk-uuid") && !text.contains("0123"));
    assert_eq!(
        sample(
            &text,
            "quarry_coordinator_marble_activations_unlabelled_total"
        ),
        Some(3.0)
    );
    let labels = format!("{{type=\"app\",uuid=\"{uuid}\"}}");
    assert_eq!(
        sample(
            &text,
            &format!("coordinator_marble_activations_total{labels}")
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!("coordinator_marble_activations_success_total{labels}")
        ),
        Some(1.0)
    );
    let events: serde_json::Value = serde_json::from_str(&get(prometheus, "/events")).unwrap();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["activation"]["marbleType"], "app");
    assert_eq!(events[0]["activation"]["uuid"], uuid);
}
