//! Properties of the decoder: no input makes it panic, and YAML conversion is stable.

use proptest::prelude::*;
use quarry_manifest::{EmptyEnvironment, ManifestDocument};

/// JSON-ish text built from manifest keys and punctuation, so that random inputs reach deep
/// into the decoder instead of failing at the first byte.
fn manifestish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(",".to_owned()),
        Just(":".to_owned()),
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("-1".to_owned()),
        Just("1.5".to_owned()),
        Just("256".to_owned()),
        prop::sample::select(vec![
            "\"Packages\"",
            "\"Marbles\"",
            "\"Secrets\"",
            "\"Cert\"",
            "\"Files\"",
            "\"Data\"",
            "\"Encoding\"",
            "\"hex\"",
            "\"base64\"",
            "\"NotAfter\"",
            "\"IPAddresses\"",
            "\"Users\"",
            "\"Roles\"",
            "\"TLS\"",
            "\"Incoming\"",
            "\"Config\"",
            "\"FeatureGates\"",
            "\"AzureHSMSealing\"",
            "\"Type\"",
            "\"cert-rsa\"",
            "\"AAEC\"",
            "\"x\"",
        ])
        .prop_map(str::to_owned),
    ];
    prop::collection::vec(token, 0..64).prop_map(|t| t.concat())
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(doc) = ManifestDocument::from_file_bytes(&bytes) {
            let _ = quarry_manifest::check(doc.manifest(), &EmptyEnvironment);
        }
    }

    #[test]
    fn manifest_like_text_never_panics(text in manifestish()) {
        if let Ok(doc) = ManifestDocument::from_file_bytes(text.as_bytes()) {
            let _ = quarry_manifest::check(doc.manifest(), &EmptyEnvironment);
        }
    }

    #[test]
    fn yaml_conversion_is_stable(text in manifestish()) {
        // Converting the JSON that YAML produced yields the same bytes again.
        if let Ok(doc) = ManifestDocument::from_yaml(&text) {
            let again = ManifestDocument::from_yaml(std::str::from_utf8(doc.raw()).unwrap()).unwrap();
            prop_assert_eq!(doc.raw(), again.raw());
            prop_assert_eq!(doc.manifest(), again.manifest());
        }
    }
}
