//! Decoding as MarbleRun's Coordinator decodes: the shapes users write, case-insensitive keys,
//! ignored keys reported as warnings, byte fields in both forms, and precise errors.

use quarry_manifest::{
    DecodeError, EmptyEnvironment, FileValue, ManifestDocument, SecretCert, SecretType,
    WarningKind, fingerprint,
};
use serde_json::json;

use crate::support::{base, data};

fn decode(value: &serde_json::Value) -> ManifestDocument {
    ManifestDocument::from_json(serde_json::to_vec(value).unwrap()).unwrap()
}

fn errors(bytes: &[u8]) -> Vec<String> {
    match ManifestDocument::from_json(bytes.to_vec()) {
        Err(DecodeError::Invalid(errors)) => errors.iter().map(|e| e.path.to_string()).collect(),
        other => panic!("expected field errors, got {other:?}"),
    }
}

#[test]
fn accepts_the_shapes_marblerun_users_write_in_json_and_yaml() {
    for name in ["marblerun-style", "lowercase-keys"] {
        let json_doc = ManifestDocument::from_file_bytes(data(&format!("{name}.json")).as_bytes())
            .unwrap_or_else(|e| panic!("{name}.json: {e}"));
        let yaml_doc = ManifestDocument::from_file_bytes(data(&format!("{name}.yaml")).as_bytes())
            .unwrap_or_else(|e| panic!("{name}.yaml: {e}"));
        assert!(json_doc.warnings().is_empty(), "{:?}", json_doc.warnings());
        assert!(yaml_doc.warnings().is_empty(), "{:?}", yaml_doc.warnings());
        assert_eq!(json_doc.manifest(), yaml_doc.manifest(), "{name}");
        let report = quarry_manifest::check(json_doc.manifest(), &EmptyEnvironment);
        assert!(report.is_valid(), "{name}: {:?}", report.violations);
    }
    let upper = ManifestDocument::from_file_bytes(data("marblerun-style.json").as_bytes()).unwrap();
    let lower = ManifestDocument::from_file_bytes(data("lowercase-keys.json").as_bytes()).unwrap();
    assert_eq!(upper.manifest(), lower.manifest());
}

#[test]
fn decodes_every_section_of_the_sample() {
    let doc = ManifestDocument::from_file_bytes(data("marblerun-style.json").as_bytes()).unwrap();
    let m = doc.manifest();
    assert_eq!(m.packages["backend"].product_id, Some(45));
    assert_eq!(m.packages["backend"].security_version, Some(2));
    assert_eq!(
        m.infrastructures["localhost"].cpusvn,
        (0u8..16).collect::<Vec<_>>()
    );
    let files = &m.marbles["backendFirst"].parameters.files;
    assert_eq!(files["/tmp/abc.txt"], FileValue::plain("foo"));
    assert_eq!(files["/tmp/defg.txt"].data, b"foobar");
    assert!(files["/tmp/defg.txt"].no_templates);
    assert_eq!(files["/tmp/config.hex"].data, b"hello");
    assert_eq!(files["/tmp/config.hex"].encoding, "hex");
    assert_eq!(
        m.marbles["backendFirst"].parameters.env["API_KEY"].encoding,
        "string"
    );
    assert!(
        String::from_utf8_lossy(&m.users["alice"].certificate.as_bytes()[..27])
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    assert!(m.users["alice"].certificate.contains('\n'));
    let cert = &m.secrets["serverCert"];
    assert_eq!(cert.kind, SecretType::CertEcdsa);
    assert_eq!((cert.size, cert.shared, cert.valid_for), (256, true, 30));
    let template = cert.cert.template().unwrap();
    assert_eq!(template.subject.common_name, "backend");
    assert_eq!(template.subject.organization, ["Acme"]);
    assert_eq!(
        template.dns_names.as_deref(),
        Some(&["backend.svc".to_owned()][..])
    );
    assert_eq!(m.secrets["rsaCert"].cert.template().unwrap().key_usage, 5);
    assert!(m.secrets["password"].user_defined);
    assert_eq!(m.tls["web"].incoming[1].cert, "serverCert");
    assert_eq!(m.config.update_threshold, 2);
}

#[test]
fn yaml_becomes_the_sorted_compact_json_marblerun_uploads() {
    let doc = ManifestDocument::from_yaml(
        "Marbles:\n  web:\n    Package: pkg\nPackages:\n  pkg:\n    UniqueID: ab\n",
    )
    .unwrap();
    assert_eq!(
        doc.raw(),
        br#"{"Marbles":{"web":{"Package":"pkg"}},"Packages":{"pkg":{"UniqueID":"ab"}}}"#
    );
    assert_eq!(doc.fingerprint(), fingerprint(doc.raw()));
}

#[test]
fn keeps_the_exact_bytes_and_fingerprints_them() {
    let raw = b"{ \"Packages\": {\"p\": {\"Debug\": true}},\n  \"Marbles\": {\"m\": {\"Package\": \"p\"}} }\n";
    let doc = ManifestDocument::from_file_bytes(raw).unwrap();
    assert_eq!(doc.raw(), raw);
    // Known answer: SHA-256 of the empty string, and the fingerprint is of the bytes as given.
    assert_eq!(
        fingerprint(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(doc.fingerprint(), fingerprint(raw));
    let respaced = ManifestDocument::from_json(&raw[..raw.len() - 1]).unwrap();
    assert_ne!(doc.fingerprint(), respaced.fingerprint());
    assert_eq!(doc.manifest(), respaced.manifest());
}

#[test]
fn matches_keys_case_insensitively_with_exact_names_for_maps() {
    let doc = decode(&json!({
        "PACKAGES": {"Pkg": {"uniqueid": "ab", "debug": true}},
        "marbles": {"Web": {"package": "Pkg", "maxACTIVATIONS": 3}}
    }));
    let m = doc.manifest();
    assert!(m.packages["Pkg"].debug);
    assert_eq!(m.marbles["Web"].max_activations, 3);
    assert!(!m.packages.contains_key("pkg"));
}

#[test]
fn ignores_unknown_keys_with_warnings_that_name_them() {
    let mut m = base();
    m["Packages"]["pkg"]["AcceptedAdivsories"] = json!(["INTEL-SA-1"]);
    m["Extra"] = json!(1);
    m["Secrets"] = json!({"c": {"Type": "cert-ecdsa", "Size": 256,
        "Cert": {"Subject": {"CommonName": "x", "DNSNames": ["a"]}}}});
    let doc = decode(&m);
    let warnings: Vec<String> = doc.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            r#"Packages["pkg"].AcceptedAdivsories: unknown key, ignored"#,
            "Extra: unknown key, ignored",
            r#"Secrets["c"].Cert.Subject.DNSNames: unknown key, ignored"#,
        ]
    );
    assert!(
        doc.warnings()
            .iter()
            .all(|w| w.kind == WarningKind::UnknownKey)
    );
}

#[test]
fn refuses_duplicate_keys_exact_and_case_insensitive() {
    let err =
        ManifestDocument::from_json(br#"{"Packages": {}, "Packages": {}}"#.to_vec()).unwrap_err();
    assert!(matches!(err, DecodeError::Syntax(_)), "{err}");
    assert!(err.to_string().contains("duplicate key"), "{err}");
    assert_eq!(errors(br#"{"Packages": {}, "packages": {}}"#), ["Packages"]);
    let err = ManifestDocument::from_yaml("Packages: {}\nPackages: {}\n").unwrap_err();
    assert!(matches!(err, DecodeError::Syntax(_)), "{err}");
}

#[test]
fn byte_fields_take_base64_or_number_arrays() {
    let doc = decode(&json!({
        "Infrastructures": {"a": {"CPUSVN": "AAEC", "RootCA": [255, 0]}},
        "Secrets": {"s": {"Type": "plain", "UserDefined": true, "Private": "aGk=", "Public": [104, 105]}}
    }));
    let m = doc.manifest();
    assert_eq!(m.infrastructures["a"].cpusvn, [0, 1, 2]);
    assert_eq!(m.infrastructures["a"].root_ca, [255, 0]);
    assert_eq!(m.secrets["s"].private.as_ref().unwrap().expose(), b"hi");
    assert_eq!(m.secrets["s"].public.as_ref().unwrap().expose(), b"hi");
    assert!(!format!("{:?}", m.secrets["s"]).contains("104"));
}

#[test]
fn cert_as_base64_der_string() {
    let doc = decode(
        &json!({"Secrets": {"s": {"Type": "cert-rsa", "UserDefined": true,
        "Cert": data("server-cert.der.b64")}}}),
    );
    assert!(matches!(
        doc.manifest().secrets["s"].cert,
        SecretCert::Der { .. }
    ));
    assert_eq!(
        errors(br#"{"Secrets": {"s": {"Cert": "AAEC"}}}"#),
        [r#"Secrets["s"].Cert"#]
    );
}

#[test]
fn wrong_types_are_reported_with_paths_all_at_once() {
    let bad = br#"{
        "Packages": {"p": {"Debug": "yes", "ProductID": -1, "SecurityVersion": 1.5}},
        "Marbles": {"m": {"Package": 1, "Parameters": {"Files": {"/a": 5, "/b": {"Data": "zz", "Encoding": "hex"},
                   "/c": {"Encoding": "rot13"}}, "Env": {"E": null}, "Argv": "x"}}},
        "Infrastructures": {"i": {"CPUSVN": "***", "QESVN": 70000, "RootCA": [256]}},
        "Config": {"UpdateThreshold": "2", "FeatureGates": "AzureHSMSealing"},
        "Users": []
    }"#;
    assert_eq!(
        errors(bad),
        [
            r#"Packages["p"].Debug"#,
            r#"Packages["p"].ProductID"#,
            r#"Packages["p"].SecurityVersion"#,
            r#"Marbles["m"].Package"#,
            r#"Marbles["m"].Parameters.Files["/a"]"#,
            r#"Marbles["m"].Parameters.Files["/b"].Data"#,
            r#"Marbles["m"].Parameters.Files["/c"].Encoding"#,
            r#"Marbles["m"].Parameters.Env["E"]"#,
            r#"Marbles["m"].Parameters.Argv"#,
            r#"Infrastructures["i"].CPUSVN"#,
            r#"Infrastructures["i"].QESVN"#,
            r#"Infrastructures["i"].RootCA[0]"#,
            "Config.UpdateThreshold",
            "Config.FeatureGates",
            "Users",
        ]
    );
}

#[test]
fn encodings_match_case_insensitively_and_keep_their_spelling() {
    let doc = decode(&json!({"Marbles": {"m": {"Parameters": {"Files": {
        "/a": {"Data": "aGk=", "Encoding": "Base64"}, "/b": {"Data": "6869", "Encoding": "HEX"}}}}}}));
    let files = &doc.manifest().marbles["m"].parameters.files;
    assert_eq!(
        (files["/a"].data.as_slice(), files["/a"].encoding.as_str()),
        (&b"hi"[..], "Base64")
    );
    assert_eq!(files["/b"].data, b"hi");
}

#[test]
fn syntax_errors_carry_the_position() {
    let err = ManifestDocument::from_file_bytes(b"{\n  \"Packages\": {,}\n}").unwrap_err();
    assert!(matches!(err, DecodeError::Syntax(_)));
    assert!(err.to_string().contains("line 2"), "{err}");
    let err = ManifestDocument::from_file_bytes(b"Packages:\n  - a\n - b\n").unwrap_err();
    assert!(err.to_string().starts_with("invalid yaml"), "{err}");
    let err = ManifestDocument::from_json(b"[1, 2]".to_vec()).unwrap_err();
    assert_eq!(err.to_string(), "expected an object, found an array");
}

#[test]
fn yaml_with_invalid_utf8_names_utf8_and_its_position() {
    let err = ManifestDocument::from_file_bytes(b"Packages:\n  p\xff: {}\n").unwrap_err();
    assert!(matches!(err, DecodeError::Syntax(_)));
    assert_eq!(
        err.to_string(),
        "invalid yaml: invalid utf-8 at line 2 column 4"
    );
    // A document that starts like JSON keeps the JSON parser's message.
    let err = ManifestDocument::from_file_bytes(b"{\"Packages\": \"\xff\"}").unwrap_err();
    assert!(err.to_string().starts_with("invalid json"), "{err}");
}

#[test]
fn yaml_with_two_documents_is_refused_in_the_users_terms() {
    let err = ManifestDocument::from_file_bytes(b"Packages: {}\n---\nPackages: {}\n").unwrap_err();
    assert!(matches!(err, DecodeError::Syntax(_)));
    let message = err.to_string();
    assert!(
        message.contains("a manifest is one yaml document"),
        "{message}"
    );
    assert!(message.contains("line 3"), "{message}");
    assert!(!message.contains("from_str"), "{message}");
}

#[test]
fn null_document_is_an_empty_manifest() {
    let doc = ManifestDocument::from_json(b"null".to_vec()).unwrap();
    let report = quarry_manifest::check(doc.manifest(), &EmptyEnvironment);
    assert_eq!(report.violations.len(), 2);
}

#[test]
fn unknown_keys_with_odd_characters_are_quoted_in_paths() {
    let mut m = base();
    m["Packages"]["pkg"]["a.b"] = json!(1);
    let doc = decode(&m);
    assert_eq!(
        doc.warnings()[0].path.to_string(),
        r#"Packages["pkg"]["a.b"]"#
    );
}

#[test]
fn large_objects_decode_in_linear_time() {
    // 100,000 keys: a quadratic duplicate check would take minutes.
    let mut text = String::from(r#"{"Packages": {"#);
    for i in 0..100_000 {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&format!(r#""p{i}": {{"Debug": true}}"#));
    }
    text.push_str(r#"}, "Marbles": {"m": {"Package": "p0"}}}"#);
    let doc = ManifestDocument::from_json(text.into_bytes()).unwrap();
    assert_eq!(doc.manifest().packages.len(), 100_000);
    assert!(quarry_manifest::check(doc.manifest(), &EmptyEnvironment).is_valid());
}

#[test]
fn debug_output_never_shows_secret_values_given_in_the_manifest() {
    let doc = decode(
        &json!({"Secrets": {"s": {"Type": "plain", "UserDefined": true,
        "Private": "c2VjcmV0LXZhbHVl"}}}),
    );
    let debug = format!("{doc:?}");
    assert!(!debug.contains("c2VjcmV0LXZhbHVl") && !debug.contains("secret-value"));
    assert!(!debug.contains("115, 101, 99"), "{debug}");
    assert!(debug.contains(&doc.fingerprint()));
}
