//! `quarry hsm check-policy`: will Managed HSM release the key to this enclave, and if not,
//! why? Offline: the release policy is evaluated with `quarry-skr-policy` against claims
//! taken from an MAA token (`--token`), from a quote (`--quote`, mapped to MAA's claims by
//! `quarry-enclave`), or from identity flags. The answer lists every condition with the value
//! it saw, and names each assumption the verdict relies on (what MAA would add or check, which
//! authority issues the token, whether the token's signature was checked).
//!
//! Exit 0 when the key would be released, 1 when it would not, 3 when an input is unreadable.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use clap::{ArgGroup, Args, Subcommand};
use quarry_common::ExitCode;
use quarry_common::limits::MAX_BODY_BYTES;
use quarry_enclave::claims;
use quarry_enclave::quote::Quote;
use quarry_skr_policy::{
    Condition, ConditionDetail, ConditionEvaluation, Evaluation, Group, Operator, ReleasePolicy,
};
use serde_json::{Map, Value, json};

use super::shared::report;
use crate::failure::{Failure, Result, read_file};
use crate::output::{Out, OutputFormat};

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// `hsm ...`.
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum HsmCommand {
    /// Evaluate a key release policy against a token, a quote or an enclave identity.
    CheckPolicy(CheckPolicyArgs),
}

/// `hsm check-policy`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["token", "quote", "mrsigner", "mrenclave"])))]
pub struct CheckPolicyArgs {
    /// The key release policy (JSON, as given to `az keyvault key create --policy`).
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// An MAA token (JWT) whose claims are evaluated.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["quote", "mrsigner", "mrenclave", "product_id", "svn", "debug"])]
    pub token: Option<PathBuf>,
    /// Verify the token's signature with this MAA `/certs` key set (JWKS with x5c).
    #[arg(long, value_name = "FILE", requires = "token")]
    pub maa_certs: Option<PathBuf>,
    /// An SGX quote (raw, or with the Open Enclave header) whose report body gives the claims.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["mrsigner", "mrenclave", "product_id", "svn", "debug"])]
    pub quote: Option<PathBuf>,
    /// MRSIGNER (hex) of the enclave.
    #[arg(long, value_name = "HEX")]
    pub mrsigner: Option<String>,
    /// MRENCLAVE (hex) of the enclave.
    #[arg(long, value_name = "HEX")]
    pub mrenclave: Option<String>,
    /// ISVPRODID of the enclave.
    #[arg(long, value_name = "N")]
    pub product_id: Option<u16>,
    /// ISVSVN of the enclave.
    #[arg(long, value_name = "N")]
    pub svn: Option<u16>,
    /// The enclave is a debug enclave.
    #[arg(long)]
    pub debug: bool,
    /// The MAA instance that attests the enclave (the token's `iss`); with `--token`, evaluate
    /// as if that instance had issued it.
    #[arg(long, value_name = "URL")]
    pub authority: Option<String>,
}

/// Runs an `hsm` command.
pub fn run(
    command: HsmCommand,
    format: OutputFormat,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitCode {
    let HsmCommand::CheckPolicy(args) = command;
    let result = {
        let mut o = Out { format, out, err };
        check_policy(&args, &mut o)
    };
    match result {
        Ok(true) => ExitCode::Ok,
        Ok(false) => ExitCode::Invalid,
        Err(f) => report(format, err, Err(f)),
    }
}

/// The claims to evaluate and what they assume.
struct Claims {
    claims: Map<String, Value>,
    assumptions: Vec<String>,
}

fn check_policy(args: &CheckPolicyArgs, out: &mut Out<'_>) -> Result<bool> {
    let policy_bytes = read_file(&args.policy, MAX_BODY_BYTES, "policy")?;
    let policy = ReleasePolicy::from_json(&policy_bytes)
        .map_err(|e| Failure::unreadable(format!("policy {}: {e}", args.policy.display())))?;
    let mut input = if let Some(token) = &args.token {
        token_claims(token, args.maa_certs.as_deref())?
    } else if let Some(quote) = &args.quote {
        quote_claims(quote)?
    } else {
        identity_claims(args)?
    };

    let evaluation = match (&args.authority, args.token.is_some()) {
        (Some(authority), true) => {
            let iss = input
                .claims
                .get("iss")
                .and_then(Value::as_str)
                .unwrap_or("none");
            if iss != authority {
                input.assumptions.push(format!(
                    "evaluated as if {authority} issued the token; it was issued by {iss}"
                ));
            }
            input.claims.insert("iss".into(), authority.clone().into());
            policy.evaluate(&Value::Object(input.claims.clone()))
        }
        (None, true) => policy.evaluate(&Value::Object(input.claims.clone())),
        (Some(authority), false) => {
            input.assumptions.push(format!(
                "the enclave is attested by {authority}, which issues the token (--authority)"
            ));
            input.claims.insert("iss".into(), authority.clone().into());
            policy.evaluate(&Value::Object(input.claims.clone()))
        }
        (None, false) => evaluate_per_authority(&policy, &mut input),
    };
    input.assumptions.extend(semantics_assumptions(&policy));

    let failed: Vec<&ConditionEvaluation> = evaluation.failed_claims();
    match out.format {
        OutputFormat::Text => {
            let mut text = format!("verdict: {}\n", evaluation.verdict);
            text.push_str(&evaluation.explain());
            text.push_str("assumptions:\n");
            for a in &input.assumptions {
                text.push_str(&format!("  - {a}\n"));
            }
            let _ = write!(out.out, "{text}");
        }
        OutputFormat::Json => {
            let mut conditions = Vec::new();
            for authority in &evaluation.authorities {
                flatten(&authority.conditions, &mut conditions);
            }
            let v = json!({
                "verdict": evaluation.verdict.to_string(),
                "reason": evaluation.summary(),
                "issuer": evaluation.issuer,
                "authorities": evaluation.authorities.iter().map(|a| json!({
                    "path": a.path.to_string(),
                    "authority": a.authority,
                    "issuerMatches": a.issuer_matches,
                    "held": a.held(),
                    "reason": a.reason(evaluation.issuer.as_deref()),
                })).collect::<Vec<_>>(),
                "conditions": conditions,
                "failedClaims": failed.iter().map(|c| c.path.to_string()).collect::<Vec<_>>(),
                "assumptions": input.assumptions,
            });
            let _ = writeln!(out.out, "{v}");
        }
    }
    Ok(evaluation.is_released())
}

fn flatten(c: &ConditionEvaluation, out: &mut Vec<Value>) {
    let (claim, actual) = match &c.detail {
        ConditionDetail::Claim { claim, actual, .. } => (Some(claim.clone()), actual.clone()),
        ConditionDetail::Group { .. } => (None, None),
    };
    out.push(json!({
        "path": c.path.to_string(),
        "held": c.held,
        "reason": c.reason,
        "claim": claim,
        "actual": actual,
    }));
    if let ConditionDetail::Group { members, .. } = &c.detail {
        for m in members {
            flatten(m, out);
        }
    }
}

/// Without a token or `--authority`, the token's issuer is unknown: each authority of the
/// policy is tried as the issuer, and the first that releases (else the first) is reported.
fn evaluate_per_authority(policy: &ReleasePolicy, input: &mut Claims) -> Evaluation {
    let mut seen = BTreeSet::new();
    let mut first: Option<(String, Evaluation)> = None;
    for statement in &policy.any_of {
        if !seen.insert(statement.authority.clone()) {
            continue;
        }
        let mut claims = input.claims.clone();
        claims.insert("iss".into(), statement.authority.clone().into());
        let evaluation = policy.evaluate(&Value::Object(claims));
        if evaluation.is_released() {
            input.assumptions.push(format!(
                "the enclave is attested by {}, the policy's authority (no --authority given)",
                statement.authority
            ));
            return evaluation;
        }
        if first.is_none() {
            first = Some((statement.authority.clone(), evaluation));
        }
    }
    let (authority, evaluation) = first.unwrap_or_else(|| {
        (
            String::new(),
            policy.evaluate(&Value::Object(input.claims.clone())),
        )
    });
    input.assumptions.push(format!(
        "the enclave is attested by {authority}, the policy's authority (no --authority given)"
    ));
    evaluation
}

fn token_claims(path: &Path, certs: Option<&Path>) -> Result<Claims> {
    let bytes = read_file(path, MAX_BODY_BYTES, "token")?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Failure::unreadable(format!("token {} is not text", path.display())))?;
    let token = text.trim();
    let bad = |what: &str| Failure::unreadable(format!("token {}: {what}", path.display()));
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts.as_slice() else {
        return Err(bad("not a compact JWT (three dot-separated parts)"));
    };
    let decode_json = |part: &str, what: &str| -> Result<Value> {
        let raw = B64URL
            .decode(part)
            .map_err(|_| bad(&format!("{what} is not base64url")))?;
        serde_json::from_slice(&raw).map_err(|_| bad(&format!("{what} is not JSON")))
    };
    let header_json = decode_json(header, "header")?;
    let Value::Object(claims) = decode_json(payload, "payload")? else {
        return Err(bad("payload is not a JSON object"));
    };
    let mut assumptions = vec![
        "the claims are the token's as issued; Managed HSM evaluates the same claims".to_owned(),
    ];
    match certs {
        Some(certs) => {
            let signature = B64URL
                .decode(signature)
                .map_err(|_| bad("signature is not base64url"))?;
            let signed = format!("{header}.{payload}");
            verify_token_signature(&header_json, signed.as_bytes(), &signature, certs, path)?;
            assumptions.push(format!(
                "the token's RS256 signature verified with {} (that key set is trusted as the \
                 authority's)",
                certs.display()
            ));
        }
        None => assumptions.push(
            "the token's signature was NOT checked (no --maa-certs); Managed HSM accepts only \
             tokens signed by the authority"
                .to_owned(),
        ),
    }
    if let Some(exp) = claims.get("exp").and_then(Value::as_i64) {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if exp < now {
            let when = time::OffsetDateTime::from_unix_timestamp(exp)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_else(|| exp.to_string());
            assumptions.push(format!(
                "the token expired at {when}; Managed HSM refuses expired tokens, so the verdict \
                 holds for a fresh token with the same claims"
            ));
        }
    }
    Ok(Claims {
        claims,
        assumptions,
    })
}

fn verify_token_signature(
    header: &Value,
    signed: &[u8],
    signature: &[u8],
    certs: &Path,
    token: &Path,
) -> Result<()> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(Failure::invalid(format!(
            "token {}: alg {} is not RS256",
            token.display(),
            header.get("alg").unwrap_or(&Value::Null)
        )));
    }
    let kid = header.get("kid").and_then(Value::as_str).unwrap_or("");
    let set: Value = serde_json::from_slice(&read_file(certs, MAX_BODY_BYTES, "maa certs")?)
        .map_err(|e| Failure::unreadable(format!("maa certs {}: {e}", certs.display())))?;
    let key = set
        .get("keys")
        .and_then(Value::as_array)
        .and_then(|keys| {
            keys.iter()
                .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
        })
        .ok_or_else(|| {
            Failure::invalid(format!(
                "token {}: no key with kid {kid:?} in {}",
                token.display(),
                certs.display()
            ))
        })?;
    let der = key
        .get("x5c")
        .and_then(Value::as_array)
        .and_then(|x| x.first())
        .and_then(Value::as_str)
        .and_then(|s| B64.decode(s).ok())
        .ok_or_else(|| {
            Failure::unreadable(format!(
                "maa certs {}: key {kid:?} has no x5c",
                certs.display()
            ))
        })?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| {
        Failure::unreadable(format!("maa certs {}: key {kid:?}: {e}", certs.display()))
    })?;
    let public = cert.public_key().subject_public_key.data.as_ref();
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        public,
    )
    .verify(signed, signature)
    .map_err(|_| {
        Failure::invalid(format!(
            "token {}: the signature does not verify with key {kid:?} of {}",
            token.display(),
            certs.display()
        ))
    })
}

fn quote_claims(path: &Path) -> Result<Claims> {
    let bytes = read_file(path, quarry_enclave::quote::MAX_QUOTE_SIZE, "quote")?;
    let quote = Quote::parse(&bytes)
        .map_err(|e| Failure::unreadable(format!("quote {}: {e}", path.display())))?;
    let mut claims = claims::report_claims(&quote.report_body);
    claims.extend(claims::deprecated_claims(&quote.report_body));
    claims.insert("x-ms-attestation-type".into(), "sgx".into());
    Ok(Claims {
        claims,
        assumptions: vec![
            "the claims are those MAA derives from the quote's report body (MRSIGNER, MRENCLAVE, \
             ISVPRODID, ISVSVN, DEBUG) under the default attestation policy"
                .to_owned(),
            "the quote's signature and TCB level were not checked here; MAA issues no token for \
             a quote that does not verify"
                .to_owned(),
        ],
    })
}

fn identity_claims(args: &CheckPolicyArgs) -> Result<Claims> {
    let mut claims = Map::new();
    let mut absent = Vec::new();
    for (value, name, flag) in [
        (&args.mrsigner, claims::MRSIGNER, "--mrsigner"),
        (&args.mrenclave, claims::MRENCLAVE, "--mrenclave"),
    ] {
        match value {
            Some(hex_text) => {
                let bytes = hex::decode(hex_text.trim()).map_err(|e| {
                    Failure::invalid(format!("{flag} {hex_text:?} is not hex: {e}"))
                })?;
                if bytes.len() != 32 {
                    return Err(Failure::invalid(format!(
                        "{flag} has {}, expected 32",
                        crate::output::count(bytes.len() as u64, "byte", "bytes")
                    )));
                }
                claims.insert(name.into(), hex::encode(bytes).into());
            }
            None => absent.push(name),
        }
    }
    for (value, name) in [
        (args.product_id, claims::PRODUCT_ID),
        (args.svn, claims::SVN),
    ] {
        match value {
            Some(v) => {
                claims.insert(name.into(), v.into());
            }
            None => absent.push(name),
        }
    }
    claims.insert(claims::IS_DEBUGGABLE.into(), args.debug.into());
    let mut assumptions = vec![format!(
        "the enclave's claims are as given; MAA reports {} as {} ({})",
        claims::IS_DEBUGGABLE,
        args.debug,
        if args.debug { "--debug" } else { "no --debug" }
    )];
    if !absent.is_empty() {
        assumptions.push(format!(
            "claims not given are absent from the token: {}",
            absent.join(", ")
        ));
    }
    Ok(Claims {
        claims,
        assumptions,
    })
}

/// The evaluation rules the verdict depends on that Microsoft's documentation leaves open.
fn semantics_assumptions(policy: &ReleasePolicy) -> Vec<String> {
    let mut operators = BTreeSet::new();
    for statement in &policy.any_of {
        collect_operators(&statement.conditions, &mut operators);
    }
    let mut out = vec![
        "the token's iss must equal the policy's authority byte for byte; string claims \
         compare case-sensitively, and a number equals its decimal text"
            .to_owned(),
    ];
    let ordering: Vec<&str> = operators
        .iter()
        .filter(|o| **o != "equals")
        .copied()
        .collect();
    if !ordering.is_empty() {
        out.push(format!(
            "the policy uses {}, which Microsoft's grammar lists but its prose does not \
             describe; they are evaluated as numeric comparisons",
            ordering.join(", ")
        ));
    }
    out
}

fn collect_operators(group: &Group, out: &mut BTreeSet<&'static str>) {
    for member in &group.members {
        match member {
            Condition::Claim(c) => {
                out.insert(operator_name(c.operator));
            }
            Condition::Group(g) => collect_operators(g, out),
        }
    }
}

fn operator_name(op: Operator) -> &'static str {
    op.as_str()
}
