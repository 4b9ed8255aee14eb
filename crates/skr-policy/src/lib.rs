//! Azure Secure Key Release policies: the document model, its evaluation against the
//! claims of an attestation token, and an explanation of why a token does or does not satisfy it.
//!
//! A release policy is attached to an exportable key in Managed HSM. The HSM releases the key
//! only to a caller whose attestation token (from the policy's `authority`) satisfies it:
//!
//! ```
//! use quarry_skr_policy::{ReleasePolicy, Verdict};
//!
//! let policy = ReleasePolicy::from_json(br#"{
//!     "version": "1.0.0",
//!     "anyOf": [{
//!         "authority": "https://shareduks.uks.attest.azure.net",
//!         "allOf": [
//!             {"claim": "x-ms-sgx-svn", "greaterOrEquals": 2},
//!             {"claim": "x-ms-sgx-is-debuggable", "equals": false}
//!         ]
//!     }]
//! }"#)?;
//! let claims = serde_json::json!({
//!     "iss": "https://shareduks.uks.attest.azure.net",
//!     "x-ms-sgx-svn": 1,
//!     "x-ms-sgx-is-debuggable": false
//! });
//! let evaluation = policy.evaluate(&claims);
//! assert_eq!(evaluation.verdict, Verdict::Refused);
//! assert!(evaluation.summary().contains("claim x-ms-sgx-svn is 1, expected greaterOrEquals 2"));
//! # Ok::<(), quarry_skr_policy::PolicyError>(())
//! ```
//!
//! # The grammar
//!
//! `{"version": "1.0.0", "anyOf": [statement, ...]}`; a statement is
//! `{"authority": URL, "allOf" | "anyOf": [condition, ...]}`; a condition is
//! `{"claim": PATH, OPERATOR: VALUE}` or a nested `{"allOf" | "anyOf": [...]}`. Operators:
//! `equals`, `notEquals`, `less`, `lessOrEquals`, `greater`, `greaterOrEquals`, `exists`.
//! Claim paths use dots to descend into nested objects (`x-ms-runtime.client-payload.nonce`).
//! A missing claim makes its condition fail (except `"exists": false`). Equality is loose across
//! JSON types ([`compare`]).
//!
//! # Assumptions
//!
//! The public material on the service leaves these points open; this crate decides them as
//! follows, and the emulator therefore behaves this way:
//!
//! 1. All seven operators are implemented. Microsoft's grammar lists them but its prose calls
//!    `equals` the only one; a portable policy uses only `equals`.
//! 2. Ordering operators compare numbers; a string that is a JSON number counts as that number;
//!    other values are not comparable and the condition fails.
//! 3. `notEquals` fails when the claim is missing (a missing claim never satisfies a
//!    comparison). `exists` takes a boolean: `true` needs the claim, `false` its absence.
//! 4. String comparison is case-sensitive; loose equality matches canonical texts exactly
//!    (`true` equals `"true"` but not `"True"`; `2` equals `"2"` but not `"2.0"`).
//! 5. The authority must equal the token's `iss` byte for byte: no normalisation of a
//!    trailing slash or of case.
//! 6. Only version `1.0.0` is accepted (`1.0` is stored as `1.0.0`, as observed); the pre-GA
//!    `0.2` format with `"condition"`/`"value"` is refused with a message that says so.
//! 7. Members the grammar does not define are refused rather than ignored, and so is a
//!    top-level `allOf` (shown in one Microsoft example, contrary to the grammar).
//! 8. A claim name is first looked up whole as a top-level claim, then as a dotted path, so a
//!    claim whose name contains a dot still matches.
//! 9. `anyOf`/`allOf` may nest (the Azure CLI's own default policies do), up to
//!    [`MAX_CONDITION_DEPTH`] levels.

pub mod compare;
mod error;
mod eval;
mod model;

pub use error::PolicyError;
pub use eval::{
    AuthorityEvaluation, ConditionDetail, ConditionEvaluation, Evaluation, Verdict, lookup_claim,
};
pub use model::{
    AuthorityStatement, ClaimCondition, Condition, Group, GroupKind, MAX_CONDITION_DEPTH, Operator,
    POLICY_VERSION, ReleasePolicy,
};
