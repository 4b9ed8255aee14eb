//! The real quote parses to the values its README lists.

use quarry_enclave::claims;
use quarry_enclave::quote::{PckCa, Quote, QuoteError, with_open_enclave_header};

use crate::fixtures::real_quote;

#[test]
fn real_quote_parses_to_readme_values() {
    let raw = real_quote();
    assert_eq!(raw.len(), 4600);
    let q = Quote::parse(&raw).unwrap();
    assert!(!q.open_enclave_header);
    assert_eq!(q.header.version, 3);
    assert_eq!(q.header.attestation_key_type, 2);
    assert_eq!(q.header.tee_type, 0);
    assert_eq!(
        q.header.qe_vendor_id,
        quarry_enclave::quote::INTEL_QE_VENDOR_ID
    );
    let b = &q.report_body;
    assert_eq!(
        hex::encode(b.mr_enclave),
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    );
    assert_eq!(
        hex::encode(b.mr_signer),
        "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
    );
    assert_eq!((b.isv_prod_id, b.isv_svn), (0, 0));
    assert_eq!(b.attributes.flags, 0x05);
    assert!(!b.attributes.is_debug());
    assert_eq!(&b.report_data[..13], b"Hello, world!");
    assert!(b.report_data[13..].iter().all(|&x| x == 0));
    assert_eq!(q.signature.certification_data.cert_type, 5);
    assert_eq!(q.signature.certification_data.data.len(), 3548);
    assert_eq!(q.encode(), raw);
}

#[test]
fn real_quote_has_fmspc_and_processor_ca() {
    let q = Quote::parse(&real_quote()).unwrap();
    let chain = q.pck_chain().unwrap();
    assert_eq!(chain.certificates().len(), 3);
    assert_eq!(hex::encode_upper(chain.fmspc().unwrap()), "00A067110000");
    assert_eq!(chain.ca().unwrap(), PckCa::Processor);
}

#[test]
fn real_quote_with_open_enclave_header() {
    let raw = real_quote();
    let q = Quote::parse(&with_open_enclave_header(&raw)).unwrap();
    assert!(q.open_enclave_header);
    assert_eq!(q.encode(), raw);
}

#[test]
fn real_quote_maps_to_maa_claims() {
    let q = Quote::parse(&real_quote()).unwrap();
    let c = claims::report_claims(&q.report_body);
    assert_eq!(
        c[claims::MRSIGNER],
        "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
    );
    assert_eq!(c[claims::IS_DEBUGGABLE], false);
    assert_eq!(c[claims::PRODUCT_ID], 0);
    assert!(
        c[claims::REPORT_DATA]
            .as_str()
            .unwrap()
            .starts_with(&hex::encode("Hello, world!"))
    );
}

#[test]
fn truncated_real_quote_names_the_field() {
    let raw = real_quote();
    let err = Quote::parse(&raw[..raw.len() - 100]).unwrap_err();
    assert!(
        matches!(
            err,
            QuoteError::Truncated {
                field: "signature data",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("signature data"), "{err}");
}
