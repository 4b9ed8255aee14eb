//! `POST /api/v2/monotonic-counter` against the real binary, with Marble certificates obtained
//! by real activations and sent by `curl` as TLS client certificates: the feature gate (checked
//! before authentication), the refusal of every certificate that is not a current Marble
//! certificate of this Coordinator, the compare-and-set rule, isolation per name, UUID and
//! Marble type, persistence across a restart, and concurrent increments.

use std::path::{Path, PathBuf};

use quarry_premain::identity::MarbleIdentity;
use quarry_testkit::coordinator::Coordinator;
use serde_json::json;

use crate::activation::{Client, SIGNER, simulated_quote};
use crate::tools::{Answer, Trust, b64, curl, file, openssl};
use crate::users::user_cert;
use crate::workflow::set_manifest;

const UUID_A: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
const UUID_B: &str = "6ba7b811-9dad-11d1-80b4-00c04fd430c8";

fn manifest(gates: &[&str]) -> Vec<u8> {
    let manifest = json!({
        "Packages": {"pkg": {"SignerID": SIGNER, "ProductID": 3, "SecurityVersion": 2}},
        "Marbles": {"app": {"Package": "pkg"}, "db": {"Package": "pkg"}},
        "Config": {"FeatureGates": gates}
    });
    serde_json::to_vec(&manifest).unwrap()
}

/// A Marble's certificate chain and key files, from a real activation.
struct MarbleFiles {
    chain: PathBuf,
    key: PathBuf,
}

impl MarbleFiles {
    fn args(&self) -> Vec<String> {
        vec![
            "--cert".into(),
            self.chain.display().to_string(),
            "--key".into(),
            self.key.display().to_string(),
        ]
    }
}

/// Activates a Marble of `marble_type` with `uuid` and saves what it received.
fn activate(c: &mut Coordinator, dir: &Path, marble_type: &str, uuid: &str) -> MarbleFiles {
    let client = Client::new(c);
    let id = MarbleIdentity::generate(&["localhost".into()], &[]).unwrap();
    let params = client
        .send(&id, simulated_quote(&id.report_data()), marble_type, uuid)
        .unwrap();
    let name = format!("{marble_type}-{uuid}-{}", c.client_addr().port());
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
    MarbleFiles { chain, key }
}

/// Sends `{"name": name, "value": value}` with the client certificate arguments `cert`.
fn set(c: &Coordinator, dir: &Path, cert: &[String], name: &str, value: u64) -> Answer {
    let body = file(
        dir,
        &format!("counter-{name}-{value}-{}.json", cert.len()),
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

/// The previous value of a successful answer.
fn previous(answer: &Answer) -> u64 {
    answer.data()["value"].as_u64().unwrap()
}

fn assert_refused(answer: &Answer, status: u16, message: &str) {
    assert_eq!(answer.status, status, "{:?}", answer.body);
    assert!(answer.message().contains(message), "{:?}", answer.body);
}

/// A self-signed certificate as users make them (not a Marble certificate).
fn self_signed(dir: &Path) -> Vec<String> {
    let key = dir.join("user.key");
    let cert = dir.join("user.pem");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        &format!("/CN={UUID_A}"),
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-days",
        "1",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    vec![
        "--cert".into(),
        cert.display().to_string(),
        "--key".into(),
        key.display().to_string(),
    ]
}

#[test]
fn monotonic_counter_is_gated_before_authentication() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = Coordinator::start(dir).unwrap();

    // State 2: no manifest, so no gate; refused before anything else.
    let answer = set(&c, dir, &[], "ctr", 1);
    assert_refused(
        &answer,
        403,
        "MonotonicCounter feature is not enabled in the manifest",
    );
    assert_eq!(answer.body["status"], "error");
    assert_eq!(answer.content_type, "text/plain; charset=utf-8");

    // A manifest with another gate: still 403, with or without a Marble certificate.
    set_manifest(&c, &Trust::Insecure, dir, &manifest(&["SignQuoteEndpoint"]));
    let marble = activate(&mut c, dir, "app", UUID_A);
    for cert in [Vec::new(), marble.args()] {
        let answer = set(&c, dir, &cert, "ctr", 1);
        assert_refused(
            &answer,
            403,
            "MonotonicCounter feature is not enabled in the manifest",
        );
    }
    assert!(!c.log().contains("monotonic counter increased"));
}

#[test]
fn monotonic_counter_refuses_everything_but_a_current_marble_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = Coordinator::start(dir).unwrap();
    set_manifest(&c, &Trust::Insecure, dir, &manifest(&["MonotonicCounter"]));

    // No certificate.
    let answer = set(&c, dir, &[], "ctr", 1);
    assert_refused(&answer, 401, "no client certificate provided");
    assert_eq!(answer.body["status"], "fail");

    // A self-signed (user) certificate, even with a UUID as its name.
    let answer = set(&c, dir, &self_signed(dir), "ctr", 1);
    assert_refused(
        &answer,
        401,
        "not issued by the current marble root certificate",
    );

    // A real Marble certificate of another Coordinator (same names, another key).
    let other_dir = dir.join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let mut other = Coordinator::start(&other_dir).unwrap();
    set_manifest(
        &other,
        &Trust::Insecure,
        &other_dir,
        &manifest(&["MonotonicCounter"]),
    );
    let foreign = activate(&mut other, &other_dir, "app", UUID_A);
    let answer = set(&c, dir, &foreign.args(), "ctr", 1);
    assert_eq!(answer.status, 401, "{:?}", answer.body);
    assert!(
        answer.message().starts_with(
            "client certificate is not a valid marble certificate of this coordinator"
        ),
        "{:?}",
        answer.body
    );
    // It works where it came from.
    assert_eq!(
        previous(&set(&other, &other_dir, &foreign.args(), "ctr", 1)),
        0
    );

    // Nothing was stored here: this Coordinator's Marble starts from 0.
    let own = activate(&mut c, dir, "app", UUID_A);
    assert_eq!(previous(&set(&c, dir, &own.args(), "ctr", 1)), 0);
    assert_eq!(
        c.log().matches("marble request refused").count(),
        3,
        "{}",
        c.log()
    );
}

#[test]
fn monotonic_counters_only_grow_per_marble_and_name_and_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = Coordinator::start(dir).unwrap();
    set_manifest(&c, &Trust::Insecure, dir, &manifest(&["monotoniccounter"]));
    let a = activate(&mut c, dir, "app", UUID_A);
    let a = a.args();

    // Replaced only by a greater value; the answer is always the value before.
    assert_eq!(previous(&set(&c, dir, &a, "ctr", 5)), 0);
    assert_eq!(previous(&set(&c, dir, &a, "ctr", 3)), 5);
    assert_eq!(previous(&set(&c, dir, &a, "ctr", 5)), 5);
    assert_eq!(previous(&set(&c, dir, &a, "ctr", 7)), 5);
    assert_eq!(previous(&set(&c, dir, &a, "ctr", 0)), 7);
    assert_eq!(previous(&set(&c, dir, &a, "ctr", u64::MAX)), 7);
    assert_eq!(previous(&set(&c, dir, &a, "ctr", 0)), u64::MAX);

    // Another name, another UUID of the same type, the same UUID with another type: each its
    // own counter.
    assert_eq!(previous(&set(&c, dir, &a, "other", 2)), 0);
    let b = activate(&mut c, dir, "app", UUID_B).args();
    assert_eq!(previous(&set(&c, dir, &b, "ctr", 1)), 0);
    let db = activate(&mut c, dir, "db", UUID_A).args();
    assert_eq!(previous(&set(&c, dir, &db, "ctr", 9)), 0);
    assert_eq!(previous(&set(&c, dir, &b, "ctr", 0)), 1);
    assert_eq!(previous(&set(&c, dir, &a, "other", 0)), 2);

    // Who changed which counter is logged; a request that changes nothing is not.
    let log = c.log();
    assert_eq!(
        log.matches("monotonic counter increased").count(),
        6,
        "{log}"
    );
    assert!(
        log.contains(&format!("marble_type=db uuid={UUID_A} counter=\"ctr\"")),
        "{log}"
    );

    // A bad body is refused after authentication, naming the field.
    let body = file(dir, "bad.json", r#"{"name": "ctr", "value": -1}"#);
    let args: Vec<&str> = a.iter().map(String::as_str).collect();
    let answer = curl(
        &Trust::Insecure,
        "POST",
        &c.url("/api/v2/monotonic-counter"),
        Some(&body),
        &args,
    );
    assert_refused(&answer, 400, "value: expected an unsigned 64-bit integer");

    // The values are sealed with the state, and the Marble certificates still work.
    c.restart().unwrap();
    assert_eq!(previous(&set(&c, dir, &a, "ctr", 0)), u64::MAX);
    assert_eq!(previous(&set(&c, dir, &a, "other", 0)), 2);
    assert_eq!(previous(&set(&c, dir, &b, "ctr", 0)), 1);
    assert_eq!(previous(&set(&c, dir, &db, "ctr", 10)), 9);
}

#[test]
fn concurrent_increments_are_serialised_and_none_is_lost() {
    const N: u64 = 16;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = Coordinator::start(dir).unwrap();
    set_manifest(&c, &Trust::Insecure, dir, &manifest(&["MonotonicCounter"]));
    let a = activate(&mut c, dir, "app", UUID_A).args();

    // Every request sets a different value; all are sent at once.
    let barrier = std::sync::Barrier::new(N as usize);
    let answers: Vec<(u64, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..=N)
            .map(|value| {
                let (c, a, barrier) = (&c, &a, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    (value, previous(&set(c, dir, a, "race", value)))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    // The requests that raised the counter form one chain from 0: each saw exactly the value
    // the one before it stored. Two requests that both saw the same value and both raised it
    // would mean one increment was lost.
    let mut raised: Vec<(u64, u64)> = answers.iter().copied().filter(|(v, p)| v > p).collect();
    raised.sort_by_key(|&(_, p)| p);
    let mut expected_previous = 0;
    for &(value, previous) in &raised {
        assert_eq!(previous, expected_previous, "{answers:?}");
        expected_previous = value;
    }
    assert_eq!(expected_previous, N, "{answers:?}");
    // The others saw a value at least theirs, which some raising request stored.
    for &(value, previous) in answers.iter().filter(|(v, p)| v <= p) {
        assert!(
            raised.iter().any(|&(v, _)| v == previous),
            "{value} saw {previous}, which nobody stored: {answers:?}"
        );
    }
    assert_eq!(previous(&set(&c, dir, &a, "race", 0)), N);
    assert_eq!(
        c.log().matches("monotonic counter increased").count(),
        raised.len()
    );
}

#[test]
fn certificates_from_before_an_update_that_rotated_the_marble_root_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = Coordinator::start(dir).unwrap();
    let carol = user_cert(dir, "carol", false);
    let manifest = json!({
        "Packages": {"pkg": {"SignerID": SIGNER, "ProductID": 3, "SecurityVersion": 1}},
        "Marbles": {"app": {"Package": "pkg"}},
        "Users": {"carol": {"Certificate": carol.pem, "Roles": ["pkg"]}},
        "Roles": {"pkg": {"ResourceType": "Packages", "ResourceNames": ["pkg"], "Actions": ["UpdateSecurityVersion"]}},
        "Config": {"FeatureGates": ["MonotonicCounter"]}
    });
    set_manifest(
        &c,
        &Trust::Insecure,
        dir,
        &serde_json::to_vec(&manifest).unwrap(),
    );
    let before = activate(&mut c, dir, "app", UUID_A).args();
    assert_eq!(previous(&set(&c, dir, &before, "ctr", 4)), 0);

    // A package update rotates the intermediate and the Marble root.
    let update = json!({"Packages": {"pkg": {"SecurityVersion": 2}}}).to_string();
    let body = file(
        dir,
        "update.json",
        json!({ "manifest": b64(update.as_bytes()) }).to_string(),
    );
    let cert = carol.cert.display().to_string();
    let key = carol.key.display().to_string();
    let answer = curl(
        &Trust::Insecure,
        "POST",
        &c.url("/api/v2/update"),
        Some(&body),
        &["--cert", &cert, "--key", &key],
    );
    assert_eq!(answer.data()["missingAcknowledgments"], 0);

    let answer = set(&c, dir, &before, "ctr", 5);
    assert_refused(
        &answer,
        401,
        "client certificate is not a valid marble certificate of this coordinator",
    );
    // The Marble activated again (same type and UUID, new certificate) keeps its counter.
    let after = activate(&mut c, dir, "app", UUID_A).args();
    assert_eq!(previous(&set(&c, dir, &after, "ctr", 5)), 4);
}
