//! One passing and one failing case for every check of the reference (C1–C24, P1, P2) and of
//! Quarry's own (Q1–Q3). Each failing case asserts the exact set of (path, rule) it expects.

use serde_json::json;

use crate::support::{
    alice_pem, assert_valid, assert_violations, base, bob_pem, check, data, recovery_pem,
};

const MRENCLAVE: &str = "6b2822ac2585040d4b9397675d54977a71ef292ab5b3c0a6acceca26074ae585";
const MRSIGNER: &str = "43361affedeb75affee9baec7e054a5e14883213e5a121b67d74a0e12e9d2b7a";

#[test]
fn c1_packages_must_not_be_empty() {
    let mut m = base();
    m["Packages"]["other"] = json!({"UniqueID": MRENCLAVE});
    assert_valid(&m);
    let m = json!({"Packages": {}, "Marbles": {"web": {"Package": "pkg"}}});
    assert_violations(
        &m,
        &[("Packages", "C1"), (r#"Marbles["web"].Package"#, "C3")],
    );
    let m = json!({"Marbles": {"web": {"Package": "pkg"}}});
    assert_violations(
        &m,
        &[("Packages", "C1"), (r#"Marbles["web"].Package"#, "C3")],
    );
}

#[test]
fn c2_marbles_must_not_be_empty() {
    assert_valid(&base());
    let mut m = base();
    m["Marbles"] = json!({});
    assert_violations(&m, &[("Marbles", "C2")]);
    m.as_object_mut().unwrap().remove("Marbles");
    assert_violations(&m, &[("Marbles", "C2")]);
}

#[test]
fn c3_marble_package_must_exist() {
    assert_valid(&base());
    let mut m = base();
    m["Marbles"]["db"] = json!({"Package": "PKG"});
    assert_violations(&m, &[(r#"Marbles["db"].Package"#, "C3")]);
    m["Marbles"]["db"] = json!({});
    assert_violations(&m, &[(r#"Marbles["db"].Package"#, "C3")]);
}

#[test]
fn c4_unique_id_excludes_other_identity_fields() {
    let mut m = base();
    m["Packages"]["pkg"] = json!({"UniqueID": MRENCLAVE, "Debug": false});
    assert_valid(&m);
    for extra in [
        json!({"SignerID": MRSIGNER}),
        json!({"ProductID": 1}),
        json!({"SecurityVersion": 0}),
    ] {
        let mut m = base();
        for (k, v) in extra.as_object().unwrap() {
            m["Packages"]["pkg"][k] = v.clone();
        }
        assert_violations(&m, &[(r#"Packages["pkg"]"#, "C4")]);
    }
}

#[test]
fn c4_debug_package_gets_a_warning_instead() {
    let mut m = base();
    m["Packages"]["pkg"] = json!({"UniqueID": MRENCLAVE, "SignerID": MRSIGNER, "Debug": true});
    let report = check(&m);
    assert!(report.is_valid(), "{:?}", report.violations);
    assert_eq!(report.warnings.len(), 1);
    assert_eq!(report.warnings[0].path.to_string(), r#"Packages["pkg"]"#);
}

#[test]
fn c5_signer_identity_needs_all_three_fields() {
    let mut m = base();
    m["Packages"]["pkg"] = json!({"SignerID": MRSIGNER, "ProductID": 3, "SecurityVersion": 1});
    assert_valid(&m);
    m["Packages"]["pkg"] = json!({"SignerID": MRSIGNER, "ProductID": 3});
    assert_violations(&m, &[(r#"Packages["pkg"]"#, "C5")]);
    m["Packages"]["pkg"] = json!({});
    assert_violations(&m, &[(r#"Packages["pkg"]"#, "C5")]);
    // ProductID 0 and SecurityVersion 0 are set values, not missing ones.
    m["Packages"]["pkg"] = json!({"SignerID": MRSIGNER, "ProductID": 0, "SecurityVersion": 0});
    assert_valid(&m);
}

#[test]
fn c5_debug_package_without_identity_is_accepted_with_a_warning() {
    let mut m = base();
    m["Packages"]["pkg"] = json!({"Debug": true});
    let report = check(&m);
    assert!(report.is_valid());
    assert_eq!(report.warnings.len(), 1);
}

#[test]
fn packages_no_marble_uses_are_not_checked() {
    let mut m = base();
    m["Packages"]["unused"] = json!({"SignerID": MRSIGNER});
    assert_valid(&m);
}

#[test]
fn c6_marble_tls_tags_must_exist() {
    let mut m = base();
    m["TLS"] = json!({"web": {"Incoming": [{"Port": "8443"}]}});
    m["Marbles"]["web"]["TLS"] = json!(["web"]);
    assert_valid(&m);
    m["Marbles"]["web"]["TLS"] = json!(["web", "Web"]);
    assert_violations(&m, &[(r#"Marbles["web"].TLS[1]"#, "C6")]);
}

#[test]
fn c7_incoming_needs_a_port() {
    let mut m = base();
    m["TLS"] = json!({"t": {"Incoming": [{"Port": "1"}]}});
    assert_valid(&m);
    m["TLS"] = json!({"t": {"Incoming": [{"Port": "1"}, {"Addr": "x"}]}});
    assert_violations(&m, &[(r#"TLS["t"].Incoming[1].Port"#, "C7/C10")]);
}

#[test]
fn c8_incoming_cert_must_name_a_secret_and_disable_client_auth() {
    let mut m = base();
    m["Secrets"] = json!({"c": {"Type": "cert-ecdsa", "Size": 256}});
    m["TLS"] = json!({"t": {"Incoming": [{"Port": "1", "Cert": "c", "DisableClientAuth": true}]}});
    assert_valid(&m);
    m["TLS"]["t"]["Incoming"][0]["Cert"] = json!("missing");
    assert_violations(&m, &[(r#"TLS["t"].Incoming[0].Cert"#, "C8")]);
    m["TLS"]["t"]["Incoming"][0] = json!({"Port": "1", "Cert": "c"});
    assert_violations(&m, &[(r#"TLS["t"].Incoming[0].DisableClientAuth"#, "C8")]);
}

#[test]
fn c9_incoming_without_cert_must_keep_client_auth() {
    let mut m = base();
    m["TLS"] = json!({"t": {"Incoming": [{"Port": "1", "DisableClientAuth": false}]}});
    assert_valid(&m);
    m["TLS"]["t"]["Incoming"][0]["DisableClientAuth"] = json!(true);
    assert_violations(&m, &[(r#"TLS["t"].Incoming[0].DisableClientAuth"#, "C9")]);
}

#[test]
fn c10_outgoing_needs_addr_and_port() {
    let mut m = base();
    m["TLS"] = json!({"t": {"Outgoing": [{"Port": "80", "Addr": "svc"}]}});
    assert_valid(&m);
    m["TLS"]["t"]["Outgoing"] = json!([{"Port": "80"}, {"Addr": "svc"}, {}]);
    assert_violations(
        &m,
        &[
            (r#"TLS["t"].Outgoing[0].Addr"#, "C7/C10"),
            (r#"TLS["t"].Outgoing[1].Port"#, "C7/C10"),
            (r#"TLS["t"].Outgoing[2].Addr"#, "C7/C10"),
            (r#"TLS["t"].Outgoing[2].Port"#, "C7/C10"),
        ],
    );
}

#[test]
fn c11_user_certificate_must_not_be_empty() {
    let mut m = base();
    m["Users"] = json!({"alice": {"Certificate": alice_pem()}});
    assert_valid(&m);
    m["Users"]["alice"]["Certificate"] = json!("");
    assert_violations(&m, &[(r#"Users["alice"].Certificate"#, "C11")]);
}

#[test]
fn c12_user_roles_must_exist() {
    let mut m = base();
    m["Roles"] = json!({"r": {"ResourceType": "Manifest", "Actions": ["UpdateManifest"]}});
    m["Users"] = json!({"alice": {"Certificate": alice_pem(), "Roles": ["r"]}});
    assert_valid(&m);
    m["Users"]["alice"]["Roles"] = json!(["r", "R"]);
    assert_violations(&m, &[(r#"Users["alice"].Roles[1]"#, "C12")]);
}

#[test]
fn c13_user_certificates_must_differ() {
    let mut m = base();
    m["Users"] = json!({"alice": {"Certificate": alice_pem()}, "bob": {"Certificate": bob_pem()}});
    assert_valid(&m);
    m["Users"]["bob"]["Certificate"] = json!(alice_pem());
    assert_violations(&m, &[(r#"Users["bob"].Certificate"#, "C13")]);
}

/// `pem_text`'s certificate written again: base64 lines of `width` characters, ending in
/// `eol`.
fn rewrapped(pem_text: &str, width: usize, eol: &str) -> String {
    use base64::Engine;
    let der = pem::parse(pem_text).unwrap().into_contents();
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN CERTIFICATE-----{eol}");
    for line in b64.as_bytes().chunks(width) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push_str(eol);
    }
    out.push_str(&format!("-----END CERTIFICATE-----{eol}"));
    out
}

#[test]
fn c13_compares_the_certificates_der_not_their_pem_text() {
    let alice = alice_pem();
    let copies = [
        ("crlf", alice.replace('\n', "\r\n")),
        ("no final newline", alice.trim_end().to_owned()),
        ("76 columns", rewrapped(&alice, 76, "\n")),
        ("one line, crlf", rewrapped(&alice, usize::MAX, "\r\n")),
        (
            "text around the block",
            format!("Alice's certificate\n{alice}\nissued by herself\n"),
        ),
    ];
    for (what, copy) in copies {
        assert_ne!(copy, alice, "{what}");
        let mut m = base();
        m["Users"] = json!({"alice": {"Certificate": alice}, "bob": {"Certificate": bob_pem()}});
        assert_valid(&m);
        m["Users"]["b"] = json!({"Certificate": copy});
        let report = check(&m);
        assert_violations(&m, &[(r#"Users["b"].Certificate"#, "C13")]);
        assert_eq!(
            report.violations[0].error.to_string(),
            r#"certificate is the same as the one of user "alice""#,
            "{what}"
        );
    }
}

#[test]
fn c13_names_each_later_copy_once_in_name_order() {
    let mut m = base();
    m["Users"] = json!({
        "a": {"Certificate": rewrapped(&alice_pem(), 76, "\r\n")},
        "b": {"Certificate": bob_pem()},
        "c": {"Certificate": alice_pem()},
        "d": {"Certificate": rewrapped(&bob_pem(), 40, "\n")},
        "e": {"Certificate": rewrapped(&alice_pem(), 64, "\n")},
    });
    assert_violations(
        &m,
        &[
            (r#"Users["c"].Certificate"#, "C13"),
            (r#"Users["d"].Certificate"#, "C13"),
            (r#"Users["e"].Certificate"#, "C13"),
        ],
    );
    let doc =
        quarry_manifest::ManifestDocument::from_json(serde_json::to_vec(&m).unwrap()).unwrap();
    assert_eq!(
        quarry_manifest::check::duplicate_user_certificates(doc.manifest()),
        [("a", "c"), ("b", "d"), ("a", "e")]
    );
}

#[test]
fn c13_still_compares_certificates_that_do_not_parse_as_text() {
    // MarbleRun compares the text of every certificate; the same invalid text twice is both a
    // duplicate and invalid. Empty certificates are only C11.
    let mut m = base();
    m["Users"] = json!({"a": {"Certificate": "junk"}, "b": {"Certificate": "junk"}});
    assert_violations(
        &m,
        &[
            (r#"Users["a"].Certificate"#, "P1"),
            (r#"Users["b"].Certificate"#, "C13"),
            (r#"Users["b"].Certificate"#, "P1"),
        ],
    );
    m["Users"] = json!({"a": {"Certificate": ""}, "b": {"Certificate": ""}});
    assert_violations(
        &m,
        &[
            (r#"Users["a"].Certificate"#, "C11"),
            (r#"Users["b"].Certificate"#, "C11"),
        ],
    );
}

#[test]
fn c14_package_roles() {
    let mut m = base();
    m["Roles"] = json!({"r": {"ResourceType": "Packages", "ResourceNames": ["pkg"], "Actions": ["updatesecurityversion"]}});
    assert_valid(&m);
    m["Roles"]["r"]["ResourceNames"] = json!(["pkg", "other"]);
    assert_violations(&m, &[(r#"Roles["r"].ResourceNames[1]"#, "C14")]);
    m["Roles"]["r"]["ResourceNames"] = json!(["pkg"]);
    m["Roles"]["r"]["Actions"] = json!(["UpdateSecurityVersion", "ReadSecret"]);
    assert_violations(&m, &[(r#"Roles["r"].Actions[1]"#, "C14-C16")]);
    assert_eq!(
        check(&m).violations[0].error.to_string(),
        r#"action "ReadSecret" is not allowed for resource type Packages"#
    );
}

#[test]
fn c15_secret_roles() {
    let mut m = base();
    m["Secrets"] = json!({
        "shared": {"Type": "symmetric-key", "Size": 128, "Shared": true},
        "unique": {"Type": "symmetric-key", "Size": 128},
        "user": {"Type": "plain", "UserDefined": true}
    });
    m["Roles"] = json!({
        "read": {"ResourceType": "Secrets", "ResourceNames": ["shared", "user"], "Actions": ["ReadSecret"]},
        "write": {"ResourceType": "Secrets", "ResourceNames": ["user"], "Actions": ["writesecret", "READSECRET"]}
    });
    assert_valid(&m);

    let mut bad = m.clone();
    bad["Roles"]["read"]["ResourceNames"] = json!(["shared", "unique", "nope"]);
    assert_violations(
        &bad,
        &[
            (r#"Roles["read"].ResourceNames[1]"#, "C15"),
            (r#"Roles["read"].ResourceNames[2]"#, "C15"),
        ],
    );
    let mut bad = m.clone();
    bad["Roles"]["write"]["ResourceNames"] = json!(["user", "shared"]);
    assert_violations(&bad, &[(r#"Roles["write"].ResourceNames[1]"#, "C15")]);
    let mut bad = m.clone();
    bad["Roles"]["write"]["Actions"] = json!(["WriteSecret", "UpdateManifest"]);
    assert_violations(&bad, &[(r#"Roles["write"].Actions[1]"#, "C14-C16")]);
}

#[test]
fn c16_manifest_roles() {
    let mut m = base();
    m["Roles"] = json!({"r": {"ResourceType": "Manifest", "Actions": ["UpdateManifest"]}});
    assert_valid(&m);
    m["Roles"]["r"]["ResourceNames"] = json!(["pkg"]);
    assert_violations(&m, &[(r#"Roles["r"].ResourceNames"#, "C16")]);
    m["Roles"]["r"]["ResourceNames"] = json!([]);
    m["Roles"]["r"]["Actions"] = json!(["UpdateSecurityVersion"]);
    assert_violations(&m, &[(r#"Roles["r"].Actions[0]"#, "C14-C16")]);
    assert!(
        check(&m).violations[0]
            .error
            .to_string()
            .ends_with("resource type Manifest")
    );
}

#[test]
fn c17_resource_type_is_case_sensitive() {
    let mut m = base();
    m["Roles"] = json!({"r": {"ResourceType": "Secrets", "Actions": ["ReadSecret"]}});
    assert_valid(&m);
    m["Roles"]["r"]["ResourceType"] = json!("secrets");
    assert_violations(&m, &[(r#"Roles["r"].ResourceType"#, "C17")]);
    m["Roles"]["r"]["ResourceType"] = json!("");
    assert_violations(&m, &[(r#"Roles["r"].ResourceType"#, "C17")]);
}

#[test]
fn c18_secret_type_must_be_known() {
    let mut m = base();
    m["Secrets"] = json!({
        "a": {"Type": "symmetric-key", "Size": 8}, "b": {"Type": "cert-rsa", "Size": 2048},
        "c": {"Type": "cert-ecdsa", "Size": 256}, "d": {"Type": "cert-ed25519"},
        "e": {"Type": "plain", "UserDefined": true}
    });
    assert_valid(&m);
    m["Secrets"]["a"]["Type"] = json!("Symmetric-Key");
    m["Secrets"]["b"] = json!({"Size": 8});
    assert_violations(
        &m,
        &[
            (r#"Secrets["a"].Type"#, "C18"),
            (r#"Secrets["b"].Type"#, "C18"),
        ],
    );
}

#[test]
fn c19_valid_for_and_not_after_exclude_each_other_for_certificates() {
    let mut m = base();
    m["Secrets"] = json!({
        "c": {"Type": "cert-ecdsa", "Size": 256, "ValidFor": 7},
        "d": {"Type": "cert-ecdsa", "Size": 256, "Cert": {"NotAfter": "2030-01-01T00:00:00Z"}},
        "k": {"Type": "symmetric-key", "Size": 128, "ValidFor": 7,
              "Cert": {"NotAfter": "2030-01-01T00:00:00Z"}}
    });
    assert_valid(&m);
    m["Secrets"]["d"]["ValidFor"] = json!(1);
    assert_violations(&m, &[(r#"Secrets["d"].ValidFor"#, "C19")]);
    // A certificate given as DER always has a NotAfter.
    m["Secrets"]["d"] =
        json!({"Type": "cert-rsa", "ValidFor": 1, "Cert": data("server-cert.der.b64")});
    assert_violations(&m, &[(r#"Secrets["d"].ValidFor"#, "C19")]);
}

fn with_updaters(threshold: u64) -> serde_json::Value {
    let mut m = base();
    m["Roles"] = json!({
        "update": {"ResourceType": "Manifest", "Actions": ["UpdateManifest"]},
        "other": {"ResourceType": "Manifest", "Actions": []}
    });
    m["Users"] = json!({
        "alice": {"Certificate": alice_pem(), "Roles": ["update", "other"]},
        "bob": {"Certificate": bob_pem(), "Roles": ["other"]}
    });
    m["Config"] = json!({"UpdateThreshold": threshold});
    m
}

#[test]
fn c20_update_threshold_at_most_the_number_of_updaters() {
    assert_valid(&with_updaters(0));
    assert_valid(&with_updaters(1));
    assert_violations(&with_updaters(2), &[("Config.UpdateThreshold", "C20")]);
    let mut m = with_updaters(2);
    m["Users"]["bob"]["Roles"] = json!(["update"]);
    assert_valid(&m);
}

#[test]
fn c21_seal_mode_is_exact() {
    for mode in ["", "ProductKey", "UniqueKey", "Disabled"] {
        let mut m = base();
        m["Config"] = json!({"SealMode": mode});
        assert_valid(&m);
    }
    let mut m = base();
    m["Config"] = json!({"SealMode": "uniquekey"});
    assert_violations(&m, &[("Config.SealMode", "C21")]);
}

#[test]
fn c22_feature_gates_are_known_case_insensitively() {
    let mut m = base();
    m["Config"] = json!({"FeatureGates": ["signquoteendpoint", "MonotonicCounter"]});
    assert_valid(&m);
    m["Config"]["FeatureGates"] = json!(["MonotonicCounter", "Monotonic"]);
    assert_violations(&m, &[("Config.FeatureGates[1]", "C22")]);
}

#[test]
fn c23_recovery_threshold_at_most_the_number_of_keys() {
    let mut m = base();
    m["RecoveryKeys"] = json!({"a": recovery_pem(), "b": recovery_pem()});
    m["Config"] = json!({"RecoveryThreshold": 2});
    assert_valid(&m);
    m["Config"]["RecoveryThreshold"] = json!(3);
    assert_violations(&m, &[("Config.RecoveryThreshold", "C23")]);
}

#[test]
fn c24_recovery_threshold_one_is_refused() {
    let mut m = base();
    m["RecoveryKeys"] = json!({"a": recovery_pem()});
    m["Config"] = json!({"RecoveryThreshold": 0});
    assert_valid(&m);
    m["Config"]["RecoveryThreshold"] = json!(1);
    assert_violations(&m, &[("Config.RecoveryThreshold", "C24")]);
}

#[test]
fn q3_a_threshold_sharing_has_at_most_255_recovery_keys() {
    let keys = |n: usize| -> serde_json::Map<String, serde_json::Value> {
        (0..n)
            .map(|i| (format!("k{i}"), json!(recovery_pem())))
            .collect()
    };
    let mut m = base();
    m["RecoveryKeys"] = json!(keys(255));
    m["Config"] = json!({"RecoveryThreshold": 2});
    assert_valid(&m);
    m["RecoveryKeys"] = json!(keys(256));
    assert_violations(&m, &[("Config.RecoveryThreshold", "Q3")]);
    m["Config"]["RecoveryThreshold"] = json!(255);
    assert_violations(&m, &[("Config.RecoveryThreshold", "Q3")]);
    // Without a threshold below the number of keys every holder is needed (XOR): no limit.
    for threshold in [0, 256] {
        m["Config"]["RecoveryThreshold"] = json!(threshold);
        assert_valid(&m);
    }
}

#[test]
fn p1_user_certificates_must_be_pem_certificates() {
    let mut m = base();
    // Text before the PEM block is skipped, as Go's pem.Decode does.
    m["Users"] = json!({"alice": {"Certificate": format!("alice's cert\n{}", alice_pem())}});
    assert_valid(&m);
    for bad in ["not pem".to_owned(), recovery_pem()] {
        m["Users"]["alice"]["Certificate"] = json!(bad);
        assert_violations(&m, &[(r#"Users["alice"].Certificate"#, "P1")]);
    }
    // Go's x509.ParseCertificate refuses trailing data after the certificate.
    m["Users"]["alice"]["Certificate"] = json!(with_trailing_byte(&alice_pem()));
    assert_violations(&m, &[(r#"Users["alice"].Certificate"#, "P1")]);
}

/// The PEM block of `pem_text` with one byte appended to its DER content.
fn with_trailing_byte(pem_text: &str) -> String {
    let block = pem::parse(pem_text).unwrap();
    let mut der = block.contents().to_vec();
    der.push(0);
    pem::encode(&pem::Pem::new(block.tag(), der))
}

#[test]
fn p2_recovery_keys_must_be_pem_rsa_public_keys() {
    let mut m = base();
    m["RecoveryKeys"] = json!({"k": recovery_pem(), "small": data("recovery-1024.pub")});
    assert_valid(&m);
    m["RecoveryKeys"] = json!({"k": recovery_pem()});
    for bad in [
        "garbage".to_owned(),
        alice_pem(),
        data("ec.pub"),
        data("recovery-512.pub"),
        with_trailing_byte(&recovery_pem()),
    ] {
        m["RecoveryKeys"]["k"] = json!(bad);
        assert_violations(&m, &[(r#"RecoveryKeys["k"]"#, "P2")]);
    }
}

#[test]
fn reports_every_problem_at_once() {
    let report = check(&serde_json::from_str(&data("invalid.json")).unwrap());
    let mut paths: Vec<String> = report
        .violations
        .iter()
        .map(|v| format!("{} {}", v.path, v.error.rule()))
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "Config.RecoveryThreshold C24",
            "Config.SealMode C21",
            r#"Marbles["backendFirst"].TLS[1] C6"#,
            r#"Marbles["frontend"].Package C3"#,
            r#"Roles["secretReader"].ResourceNames[2] C15"#,
            r#"Secrets["apiKey"].Type C18"#,
        ]
    );
}

#[test]
fn violations_display_path_message_and_rule() {
    let mut m = base();
    m["Marbles"]["web"]["Package"] = json!("nope");
    let report = check(&m);
    assert_eq!(
        report.violations[0].to_string(),
        r#"Marbles["web"].Package: package "nope" is not defined in Packages [C3]"#
    );
}

/// The control characters and separators Q1 refuses, with a name of each for messages.
const FORBIDDEN: [(char, &str); 11] = [
    ('\n', "U+000A"),
    ('\r', "U+000D"),
    ('\t', "U+0009"),
    ('\0', "U+0000"),
    ('\u{1b}', "U+001B"),
    ('\u{7f}', "U+007F"),
    ('\u{85}', "U+0085"),
    ('\u{9b}', "U+009B"),
    ('\u{2028}', "U+2028"),
    ('\u{2029}', "U+2029"),
    ('\u{1f}', "U+001F"),
];

/// `base()` with one user, role, Marble, package, secret and recovery key, each named `name`
/// and consistent with each other.
fn with_every_name(name: &str) -> serde_json::Value {
    json!({
        "Packages": {name: {"UniqueID": MRENCLAVE}},
        "Marbles": {name: {"Package": name}},
        "Secrets": {name: {"Type": "plain", "UserDefined": true}},
        "Roles": {name: {"ResourceType": "Secrets", "ResourceNames": [name], "Actions": ["ReadSecret"]}},
        "Users": {name: {"Certificate": alice_pem(), "Roles": [name]}},
        "RecoveryKeys": {name: recovery_pem()}
    })
}

#[test]
fn q1_names_must_not_contain_control_characters() {
    for (c, code) in FORBIDDEN {
        let name = format!("a{c}b");
        let m = with_every_name(&name);
        let report = check(&m);
        let mut got: Vec<String> = report
            .violations
            .iter()
            .map(|v| format!("{} {} {}", v.path, v.error.rule(), v.error))
            .collect();
        got.sort();
        let escaped = format!("{name:?}");
        let mut want: Vec<String> = [
            ("Marbles", "marble"),
            ("Packages", "package"),
            ("RecoveryKeys", "recovery key"),
            ("Roles", "role"),
            ("Secrets", "secret"),
            ("Users", "user"),
        ]
        .iter()
        .map(|(section, kind)| {
            let path = quarry_common::DocPath::root().field(section).key(&name);
            format!("{path} Q1 {kind} name {escaped} contains the control character {code}")
        })
        .collect();
        want.sort();
        assert_eq!(got, want, "{code}");
        // The message shows the character escaped, never as itself.
        for v in &report.violations {
            assert!(!v.error.to_string().contains(c), "{code}: {}", v.error);
        }
    }
}

#[test]
fn q1_names_with_other_unicode_pass() {
    // Printable text of any script, spaces, punctuation, emoji with joiners, and format
    // characters other than the line and paragraph separators stay allowed.
    for name in [
        "web",
        "web frontend",
        "café",
        "\u{540d}\u{524d}",
        "\u{1f469}\u{200d}\u{1f4bb}",
        "a/b:c.d-e_f@g",
        "\u{a0}nbsp",
        "",
    ] {
        assert_valid(&with_every_name(name));
    }
}

#[test]
fn q1_each_section_is_checked_on_its_own() {
    let mut m = base();
    m["Secrets"] = json!({"ok": {"Type": "symmetric-key", "Size": 128},
                          "line\u{2028}break": {"Type": "symmetric-key", "Size": 128}});
    m["RecoveryKeys"] = json!({"tab\there": recovery_pem()});
    assert_violations(
        &m,
        &[
            (r#"Secrets["line\u2028break"]"#, "Q1"),
            (r#"RecoveryKeys["tab\there"]"#, "Q1"),
        ],
    );
    // Only the first offending character is named.
    let mut m = base();
    m["Roles"] = json!({"r\r\n": {"ResourceType": "Manifest", "Actions": ["UpdateManifest"]}});
    let report = check(&m);
    assert_eq!(
        report.violations[0].to_string(),
        r#"Roles["r\r\n"]: role name "r\r\n" contains the control character U+000D [Q1]"#
    );
}

#[test]
fn q2_product_id_and_security_version_fit_sixteen_bits() {
    let mut m = base();
    m["Packages"]["pkg"] =
        json!({"SignerID": MRSIGNER, "ProductID": 65535, "SecurityVersion": 65535});
    assert_valid(&m);
    m["Packages"]["pkg"]["SecurityVersion"] = json!(65536);
    assert_violations(&m, &[(r#"Packages["pkg"].SecurityVersion"#, "Q2")]);
    assert_eq!(
        check(&m).violations[0].to_string(),
        r#"Packages["pkg"].SecurityVersion: SecurityVersion 65536 is more than 65535, the largest ISVSVN of an SGX enclave [Q2]"#
    );
    m["Packages"]["pkg"]["SecurityVersion"] = json!(1);
    m["Packages"]["pkg"]["ProductID"] = json!(u64::MAX);
    assert_violations(&m, &[(r#"Packages["pkg"].ProductID"#, "Q2")]);
    assert!(
        check(&m).violations[0]
            .error
            .to_string()
            .ends_with("the largest ISVPRODID of an SGX enclave")
    );
}

#[test]
fn q2_applies_to_debug_packages_and_packages_no_marble_uses() {
    let mut m = base();
    m["Packages"]["debug"] = json!({"Debug": true, "SecurityVersion": 70000});
    m["Packages"]["unused"] =
        json!({"SignerID": MRSIGNER, "ProductID": 65536, "SecurityVersion": 1});
    m["Marbles"]["dbg"] = json!({"Package": "debug"});
    let report = check(&m);
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert_violations(
        &m,
        &[
            (r#"Packages["debug"].SecurityVersion"#, "Q2"),
            (r#"Packages["unused"].ProductID"#, "Q2"),
        ],
    );
}
