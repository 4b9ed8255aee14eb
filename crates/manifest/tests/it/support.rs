//! Fixtures and assertions shared by the topic modules.

use std::path::PathBuf;

use quarry_manifest::{EmptyEnvironment, Environment, ManifestDocument, Report};
use serde_json::{Value, json};

/// The text of a file in `tests/data`.
pub(crate) fn data(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A user certificate (PEM).
pub(crate) fn alice_pem() -> String {
    data("alice.crt")
}

/// Another user certificate (PEM).
pub(crate) fn bob_pem() -> String {
    data("bob.crt")
}

/// A 2048-bit RSA public key (PEM).
pub(crate) fn recovery_pem() -> String {
    data("recovery.pub")
}

/// The smallest valid manifest: one package by UniqueID and one Marble.
pub(crate) fn base() -> Value {
    json!({
        "Packages": {"pkg": {"UniqueID": "6b2822ac2585040d4b9397675d54977a71ef292ab5b3c0a6acceca26074ae585"}},
        "Marbles": {"web": {"Package": "pkg"}}
    })
}

/// Decodes `manifest` (which must decode) and checks it in `env`.
pub(crate) fn check_in(manifest: &Value, env: &dyn Environment) -> Report {
    let doc = ManifestDocument::from_json(serde_json::to_vec(manifest).unwrap())
        .unwrap_or_else(|e| panic!("decoding failed: {e}"));
    quarry_manifest::check(doc.manifest(), env)
}

/// Decodes and checks `manifest` with an empty environment.
pub(crate) fn check(manifest: &Value) -> Report {
    check_in(manifest, &EmptyEnvironment)
}

/// The violations of a report as (path, rule) pairs.
pub(crate) fn violations(report: &Report) -> Vec<(String, &'static str)> {
    report
        .violations
        .iter()
        .map(|v| (v.path.to_string(), v.error.rule()))
        .collect()
}

/// Asserts that `manifest` passes every check.
#[track_caller]
pub(crate) fn assert_valid(manifest: &Value) {
    let report = check(manifest);
    assert!(
        report.is_valid(),
        "unexpected violations: {:?}",
        report.violations
    );
}

/// Asserts that checking `manifest` yields exactly the violations `expected` (path, rule).
#[track_caller]
pub(crate) fn assert_violations(manifest: &Value, expected: &[(&str, &str)]) {
    let report = check(manifest);
    assert!(!report.is_valid(), "expected violations {expected:?}");
    let mut got = violations(&report);
    got.sort();
    let mut want: Vec<(String, &str)> = expected
        .iter()
        .map(|(p, r)| ((*p).to_owned(), *r))
        .collect();
    want.sort();
    assert_eq!(
        got.iter()
            .map(|(p, r)| (p.as_str(), *r))
            .collect::<Vec<_>>(),
        want.iter()
            .map(|(p, r)| (p.as_str(), *r))
            .collect::<Vec<_>>(),
        "violations: {:#?}",
        report.violations
    );
}
