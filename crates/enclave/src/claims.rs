//! The Microsoft Azure Attestation (MAA) claims of an SGX report body.
//!
//! MAA turns an SGX quote into JWT claims with fixed names and JSON types; Managed HSM release
//! policies are written against them. The emulator issues them and the CLI explains policies
//! with them, so the mapping lives here, next to the parser, in one place:
//!
//! | claim | JSON type | from |
//! |---|---|---|
//! | `x-ms-sgx-is-debuggable` | boolean | ATTRIBUTES.DEBUG |
//! | `x-ms-sgx-mrenclave` | string, 64 lower-case hex | MRENCLAVE |
//! | `x-ms-sgx-mrsigner` | string, 64 lower-case hex | MRSIGNER |
//! | `x-ms-sgx-product-id` | number | ISVPRODID |
//! | `x-ms-sgx-svn` | number | ISVSVN |
//! | `x-ms-sgx-report-data` | string, 128 lower-case hex | REPORTDATA |
//! | `x-ms-sgx-config-id` | string, 128 lower-case hex | CONFIGID (KSS only) |
//! | `x-ms-sgx-config-svn` | number | CONFIGSVN (KSS only) |
//! | `x-ms-sgx-isv-extended-product-id` | string, 32 lower-case hex | ISVEXTPRODID (KSS only) |
//! | `x-ms-sgx-isv-family-id` | string, 32 lower-case hex | ISVFAMILYID (KSS only) |
//!
//! The KSS claims appear only when the enclave has Key Separation and Sharing enabled
//! (ATTRIBUTES.KSS). MAA still emits deprecated duplicates (`is-debuggable`, `sgx-mrenclave`,
//! `sgx-mrsigner`, `product-id`, `svn`, `tee`); [`deprecated_claims`] produces them.

use serde_json::{Map, Value};

use crate::quote::ReportBody;

/// `x-ms-sgx-is-debuggable`: boolean.
pub const IS_DEBUGGABLE: &str = "x-ms-sgx-is-debuggable";
/// `x-ms-sgx-mrenclave`: lower-case hex string.
pub const MRENCLAVE: &str = "x-ms-sgx-mrenclave";
/// `x-ms-sgx-mrsigner`: lower-case hex string.
pub const MRSIGNER: &str = "x-ms-sgx-mrsigner";
/// `x-ms-sgx-product-id`: number.
pub const PRODUCT_ID: &str = "x-ms-sgx-product-id";
/// `x-ms-sgx-svn`: number.
pub const SVN: &str = "x-ms-sgx-svn";
/// `x-ms-sgx-report-data`: lower-case hex string of all 64 bytes.
pub const REPORT_DATA: &str = "x-ms-sgx-report-data";
/// `x-ms-sgx-config-id`: lower-case hex string (KSS only).
pub const CONFIG_ID: &str = "x-ms-sgx-config-id";
/// `x-ms-sgx-config-svn`: number (KSS only).
pub const CONFIG_SVN: &str = "x-ms-sgx-config-svn";
/// `x-ms-sgx-isv-extended-product-id`: lower-case hex string (KSS only).
pub const ISV_EXTENDED_PRODUCT_ID: &str = "x-ms-sgx-isv-extended-product-id";
/// `x-ms-sgx-isv-family-id`: lower-case hex string (KSS only).
pub const ISV_FAMILY_ID: &str = "x-ms-sgx-isv-family-id";

/// The JSON type of a claim value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClaimType {
    /// `true` or `false`.
    Boolean,
    /// A JSON number.
    Number,
    /// A JSON string.
    String,
}

impl ClaimType {
    /// Whether `value` has this type.
    pub fn matches(self, value: &Value) -> bool {
        match self {
            ClaimType::Boolean => value.is_boolean(),
            ClaimType::Number => value.is_number(),
            ClaimType::String => value.is_string(),
        }
    }
}

/// The type MAA gives an SGX claim derived from the report body, current or deprecated name;
/// `None` for other claims.
pub fn claim_type(name: &str) -> Option<ClaimType> {
    Some(match name {
        IS_DEBUGGABLE | "is-debuggable" => ClaimType::Boolean,
        PRODUCT_ID | SVN | CONFIG_SVN | "product-id" | "svn" => ClaimType::Number,
        MRENCLAVE
        | MRSIGNER
        | REPORT_DATA
        | CONFIG_ID
        | ISV_EXTENDED_PRODUCT_ID
        | ISV_FAMILY_ID
        | "sgx-mrenclave"
        | "sgx-mrsigner"
        | "tee" => ClaimType::String,
        _ => return None,
    })
}

/// The `x-ms-sgx-*` claims MAA derives from a report body, in MAA's order.
pub fn report_claims(body: &ReportBody) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert(
        IS_DEBUGGABLE.into(),
        Value::Bool(body.attributes.is_debug()),
    );
    claims.insert(MRENCLAVE.into(), hex::encode(body.mr_enclave).into());
    claims.insert(MRSIGNER.into(), hex::encode(body.mr_signer).into());
    claims.insert(PRODUCT_ID.into(), body.isv_prod_id.into());
    claims.insert(SVN.into(), body.isv_svn.into());
    claims.insert(REPORT_DATA.into(), hex::encode(body.report_data).into());
    if body.attributes.is_kss() {
        claims.insert(CONFIG_ID.into(), hex::encode(body.config_id).into());
        claims.insert(CONFIG_SVN.into(), body.config_svn.into());
        claims.insert(
            ISV_EXTENDED_PRODUCT_ID.into(),
            hex::encode(body.isv_ext_prod_id).into(),
        );
        claims.insert(ISV_FAMILY_ID.into(), hex::encode(body.isv_family_id).into());
    }
    claims
}

/// The deprecated duplicates MAA still emits for SGX (`is-debuggable`, `sgx-mrenclave`,
/// `sgx-mrsigner`, `product-id`, `svn`, `tee`).
pub fn deprecated_claims(body: &ReportBody) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert(
        "is-debuggable".into(),
        Value::Bool(body.attributes.is_debug()),
    );
    claims.insert("sgx-mrenclave".into(), hex::encode(body.mr_enclave).into());
    claims.insert("sgx-mrsigner".into(), hex::encode(body.mr_signer).into());
    claims.insert("product-id".into(), body.isv_prod_id.into());
    claims.insert("svn".into(), body.isv_svn.into());
    claims.insert("tee".into(), "sgx".into());
    claims
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quote::{Attributes, FLAG_DEBUG, FLAG_KSS};

    #[test]
    fn maps_names_and_types() {
        let body = ReportBody {
            mr_enclave: [0xab; 32],
            isv_prod_id: 1,
            isv_svn: 3,
            attributes: Attributes {
                flags: FLAG_DEBUG,
                xfrm: 0,
            },
            ..ReportBody::default()
        };
        let claims = report_claims(&body);
        assert_eq!(claims[IS_DEBUGGABLE], Value::Bool(true));
        assert_eq!(claims[MRENCLAVE], Value::String("ab".repeat(32)));
        assert_eq!(claims[PRODUCT_ID], Value::from(1));
        assert_eq!(claims[SVN], Value::from(3));
        assert_eq!(claims[REPORT_DATA].as_str().map(str::len), Some(128));
        assert!(!claims.contains_key(CONFIG_ID));
        for (name, value) in claims.iter().chain(deprecated_claims(&body).iter()) {
            assert!(claim_type(name).is_some_and(|t| t.matches(value)), "{name}");
        }
    }

    #[test]
    fn kss_claims_only_with_kss() {
        let mut body = ReportBody::default();
        body.attributes.flags = FLAG_KSS;
        body.config_svn = 4;
        let claims = report_claims(&body);
        assert_eq!(claims[CONFIG_SVN], Value::from(4));
        assert_eq!(claims[CONFIG_ID].as_str().map(str::len), Some(128));
        assert_eq!(claims[ISV_FAMILY_ID].as_str().map(str::len), Some(32));
    }
}
