//! Fuzzes the manifest decoder with arbitrary bytes: JSON or YAML detection, lenient decoding,
//! YAML-to-JSON conversion, then every check. Nothing may panic, and a decoded YAML document's
//! JSON must decode to the same manifest.

#![no_main]

use libfuzzer_sys::fuzz_target;
use quarry_manifest::{EmptyEnvironment, ManifestDocument};

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = ManifestDocument::from_file_bytes(data) else {
        return;
    };
    let _ = quarry_manifest::check(doc.manifest(), &EmptyEnvironment);
    let again = ManifestDocument::from_json(doc.raw().to_vec())
        .expect("the uploaded json of a decoded document decodes");
    assert_eq!(doc.manifest(), again.manifest());
});
