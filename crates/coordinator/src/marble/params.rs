//! What an activated Marble receives: its template data (secrets and `.MarbleRun`), the
//! rendered `Files`, `Env` and `Argv`, `MARBLE_TTLS_CONFIG` for Marbles with TLS tags, and the
//! four `MARBLE_PREDEFINED_*` variables, which overwrite manifest entries of the same name.
//!
//! `.Secrets` holds every secret of the manifest: shared and user-defined ones from the state,
//! unique ones made for this Marble — symmetric keys derived from the root secret (the UUID,
//! the secret's name and the Marble type as binding, see `docs/pki.md`), certificates issued
//! anew at each activation. `.Previous.Secrets` is built the same way from the previous values
//! and the previous root secret; a unique certificate is issued once and serves both.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use quarry_common::DocPath;
use quarry_manifest::Manifest;
use quarry_manifest::template::{
    MarbleRunSecrets, ParameterValue, Parameters, Renderer, Secret, SecretBytes, SecretType,
    TemplateData,
};
use quarry_pki::secrets::{CertKeyType, derive_marble_key};
use quarry_pki::{CoordinatorCa, MarbleCredentials, SystemRandom};
use quarry_store::State;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::core::keys::{self, StoredSecret};

/// `MARBLE_PREDEFINED_ROOT_CA`: PEM of the Marble root certificate.
pub const ENV_ROOT_CA: &str = "MARBLE_PREDEFINED_ROOT_CA";
/// `MARBLE_PREDEFINED_MARBLE_CERTIFICATE_CHAIN`: PEM of the Marble's certificate, then of the
/// intermediate.
pub const ENV_CERTIFICATE_CHAIN: &str = "MARBLE_PREDEFINED_MARBLE_CERTIFICATE_CHAIN";
/// `MARBLE_PREDEFINED_PRIVATE_KEY`: PEM `PRIVATE KEY` (PKCS#8) of the Marble's key.
pub const ENV_PRIVATE_KEY: &str = "MARBLE_PREDEFINED_PRIVATE_KEY";
/// `MARBLE_PREDEFINED_COORDINATOR_ROOT_CA`: PEM of the Coordinator root certificate.
pub const ENV_COORDINATOR_ROOT_CA: &str = "MARBLE_PREDEFINED_COORDINATOR_ROOT_CA";
/// `MARBLE_TTLS_CONFIG`: the transparent-TLS configuration (JSON).
pub const ENV_TTLS_CONFIG: &str = "MARBLE_TTLS_CONFIG";

/// Why a Marble's parameters could not be made. Logged in full; the Marble gets the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParamsError {
    /// A stored value is invalid.
    #[error("sealed state")]
    Key(#[from] keys::KeyError),
    /// Generating a unique secret failed.
    #[error("generating {path}")]
    Generate {
        /// The secret's path.
        path: String,
        /// The cause.
        #[source]
        source: quarry_pki::Error,
    },
    /// A certificate template could not be used.
    #[error("{0}")]
    Template(String),
    /// A `Files` or `Env` value did not render.
    #[error("rendering parameters: {0}")]
    Render(String),
}

/// The inputs of one activation's parameters.
pub struct MarbleContext<'a> {
    /// The manifest.
    pub manifest: &'a Manifest,
    /// The committed state.
    pub state: &'a State,
    /// The CA.
    pub ca: &'a CoordinatorCa,
    /// The Marble's new credentials.
    pub credentials: &'a MarbleCredentials,
    /// The Marble type.
    pub marble_type: &'a str,
    /// The UUID.
    pub uuid: &'a [u8; 16],
    /// The time of the activation.
    pub now: OffsetDateTime,
}

/// The template data of this Marble.
pub fn template_data(ctx: &MarbleContext<'_>) -> Result<TemplateData, ParamsError> {
    let marble = &ctx.manifest.marbles[ctx.marble_type];
    let binding = if marble.disable_secret_binding {
        ""
    } else {
        ctx.marble_type
    };
    let public = public_key_der(ctx.credentials.private_key_pkcs8_der())?;
    let mut data = TemplateData::new(MarbleRunSecrets {
        root_ca: Secret::reserved_certificate(bytes(ctx.ca.marble_root_certificate_der())),
        marble_cert: Secret::reserved(
            bytes(ctx.credentials.certificate_der()),
            SecretBytes::new(public),
            bytes(ctx.credentials.private_key_pkcs8_der()),
        ),
        coordinator_root: Secret::reserved_certificate(bytes(ctx.ca.root_certificate_der())),
        coordinator_intermediate: Secret::reserved_certificate(bytes(
            ctx.ca.intermediate_certificate_der(),
        )),
    });

    let root_secret = keys::root_secret(ctx.state)?;
    let previous_root_secret = keys::previous_root_secret(ctx.state)?;
    for (name, secret) in &ctx.manifest.secrets {
        let Some(kind) = SecretType::from_model(&secret.kind) else {
            continue;
        };
        let path = DocPath::root().field("Secrets").key(name);
        let generate = |source| ParamsError::Generate {
            path: path.to_string(),
            source,
        };
        if secret.user_defined || secret.shared {
            let current = keys::secret(ctx.state, name)?;
            let previous = keys::previous_secret(ctx.state, name)?;
            data.set_secret(name, stored_secret(kind, current.as_ref()));
            data.set_previous(name, stored_secret(kind, previous.as_ref()));
            continue;
        }
        let size = u32::try_from(secret.size)
            .map_err(|_| ParamsError::Template(format!("{path}: Size is too large")))?;
        if kind == SecretType::SymmetricKey {
            let key =
                derive_marble_key(&root_secret, ctx.uuid, name, binding, size).map_err(generate)?;
            let previous = derive_marble_key(&previous_root_secret, ctx.uuid, name, binding, size)
                .map_err(generate)?;
            data.set_secret(name, Secret::symmetric_key(SecretBytes::new(key.to_vec())));
            data.set_previous(
                name,
                Secret::symmetric_key(SecretBytes::new(previous.to_vec())),
            );
            continue;
        }
        let key_type = CertKeyType::from_secret(kind.as_str(), size).map_err(generate)?;
        let template = crate::core::cert_template(&secret.cert, &path.field("Cert"))
            .map_err(|e| ParamsError::Template(e.to_string()))?;
        let valid_for = u32::try_from(secret.valid_for)
            .map_err(|_| ParamsError::Template(format!("{path}: ValidFor is too large")))?;
        let issued = ctx
            .ca
            .issue_secret_certificate(key_type, &template, valid_for, ctx.now, &SystemRandom)
            .map_err(generate)?;
        let cert = Secret::certificate(
            kind,
            SecretBytes::new(issued.certificate.clone()),
            SecretBytes::new(issued.public_key.clone()),
            SecretBytes::new(issued.private_key.to_vec()),
        );
        if let Some(cert) = cert {
            data.set_secret(name, cert.clone());
            data.set_previous(name, cert);
        }
    }
    Ok(data)
}

/// A stored secret as templates see it; an absent or empty value gives empty parts, which
/// fail when encoded (a user-defined secret not uploaded yet).
fn stored_secret(kind: SecretType, stored: Option<&StoredSecret>) -> Secret {
    let part =
        |v: Option<&Vec<u8>>| SecretBytes::from_slice(v.map(Vec::as_slice).unwrap_or_default());
    let private = stored.and_then(|s| s.private.as_ref());
    let public = stored.and_then(|s| s.public.as_ref());
    match kind {
        SecretType::SymmetricKey => Secret::symmetric_key(part(private.or(public))),
        SecretType::Plain => Secret::plain(part(private.or(public))),
        _ => Secret::certificate(
            kind,
            part(stored.and_then(|s| s.cert.as_ref())),
            part(public),
            part(private),
        )
        // `kind` is a certificate type in this arm, so `certificate` returns `Some`.
        .unwrap_or_else(|| Secret::plain(SecretBytes::default())),
    }
}

/// The Marble's `Parameters` rendered, with `MARBLE_TTLS_CONFIG` and the predefined variables.
pub fn render(
    ctx: &MarbleContext<'_>,
    data: &TemplateData,
) -> Result<quarry_marble_api::Parameters, ParamsError> {
    let marble = &ctx.manifest.marbles[ctx.marble_type];
    let mut parameters = Parameters::from(&marble.parameters);
    if !marble.tls.is_empty() {
        let ttls = ttls_config(ctx, data);
        parameters.env.insert(
            ENV_TTLS_CONFIG.to_owned(),
            ParameterValue {
                data: ttls.into_bytes(),
                no_templates: true,
            },
        );
    }
    let at = DocPath::root()
        .field("Marbles")
        .key(ctx.marble_type)
        .field("Parameters");
    let rendered = Renderer::new(data)
        .render_parameters(&parameters, &at)
        .map_err(|errors| {
            let list: Vec<String> = errors.problems().iter().map(ToString::to_string).collect();
            ParamsError::Render(list.join("; "))
        })?;

    let mut out = quarry_marble_api::Parameters {
        files: rendered
            .files
            .iter()
            .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
            .collect(),
        env: rendered
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().as_bytes().to_vec()))
            .collect(),
        argv: rendered.argv.clone(),
    };
    let chain = format!(
        "{}{}",
        ctx.credentials.certificate_pem(),
        ctx.ca.intermediate_certificate_pem()
    );
    for (name, value) in [
        (
            ENV_ROOT_CA,
            ctx.ca.marble_root_certificate_pem().into_bytes(),
        ),
        (ENV_CERTIFICATE_CHAIN, chain.into_bytes()),
        (
            ENV_PRIVATE_KEY,
            ctx.credentials.private_key_pem().as_bytes().to_vec(),
        ),
        (
            ENV_COORDINATOR_ROOT_CA,
            ctx.ca.root_certificate_pem().into_bytes(),
        ),
    ] {
        out.env.insert(name.to_owned(), value);
    }
    Ok(out)
}

/// MarbleRun's transparent-TLS configuration for the Marble's tags: `{"tls": {"Incoming":
/// {"*:PORT": …}, "Outgoing": {"ADDR:PORT": …}}}` with `cacrt`, `clicrt`, `clikey` and, for
/// incoming entries, `clientAuth`; keys sorted as Go's encoder sorts map keys. A later tag
/// or entry with the same key wins.
pub fn ttls_config(ctx: &MarbleContext<'_>, data: &TemplateData) -> String {
    use serde_json::Value;

    let marble = &ctx.manifest.marbles[ctx.marble_type];
    let ca = Value::String(ctx.ca.marble_root_certificate_pem());
    let own_cert = Value::String(ctx.credentials.certificate_pem());
    let own_key = Value::String(ctx.credentials.private_key_pem().to_string());
    let mut incoming: BTreeMap<String, BTreeMap<&str, Value>> = BTreeMap::new();
    let mut outgoing: BTreeMap<String, BTreeMap<&str, Value>> = BTreeMap::new();
    for tag in &marble.tls {
        let Some(tag) = ctx.manifest.tls.get(tag) else {
            continue;
        };
        for entry in &tag.outgoing {
            outgoing.insert(
                format!("{}:{}", entry.addr, entry.port),
                BTreeMap::from([
                    ("cacrt", ca.clone()),
                    ("clicrt", own_cert.clone()),
                    ("clikey", own_key.clone()),
                ]),
            );
        }
        for entry in &tag.incoming {
            let (cert, key, client_auth) = if entry.cert.is_empty() {
                (own_cert.clone(), own_key.clone(), true)
            } else {
                let secret = data.secret(&entry.cert);
                let part = |p| {
                    secret
                        .map(|s| s.part(p).as_bytes().to_vec())
                        .unwrap_or_default()
                };
                (
                    Value::String(
                        pem("CERTIFICATE", &part(quarry_manifest::template::Part::Cert))
                            .to_string(),
                    ),
                    Value::String(
                        pem(
                            "PRIVATE KEY",
                            &part(quarry_manifest::template::Part::Private),
                        )
                        .to_string(),
                    ),
                    !entry.disable_client_auth,
                )
            };
            incoming.insert(
                format!("*:{}", entry.port),
                BTreeMap::from([
                    ("cacrt", ca.clone()),
                    ("clicrt", cert),
                    ("clientAuth", Value::Bool(client_auth)),
                    ("clikey", key),
                ]),
            );
        }
    }
    let config = BTreeMap::from([(
        "tls",
        BTreeMap::from([("Incoming", incoming), ("Outgoing", outgoing)]),
    )]);
    // Maps of strings and JSON values always serialise.
    serde_json::to_string(&config).unwrap_or_default()
}

/// PEM with 64-character lines and `\n`, as Go's `pem.EncodeToMemory` writes it.
fn pem(label: &str, der: &[u8]) -> Zeroizing<String> {
    let body = Zeroizing::new(STANDARD.encode(der));
    let mut out = Zeroizing::new(format!("-----BEGIN {label}-----\n"));
    for line in body.as_bytes().chunks(64) {
        // Base64 output is ASCII.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn bytes(der: &[u8]) -> SecretBytes {
    SecretBytes::from_slice(der)
}

/// The PKIX public key of a P-384 PKCS#8 key.
fn public_key_der(pkcs8: &[u8]) -> Result<Vec<u8>, ParamsError> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
    let invalid = |what: &str| ParamsError::Template(format!("marble key: {what}"));
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, pkcs8)
        .map_err(|_| invalid("not a P-384 PKCS#8 key"))?;
    let der = pair
        .public_key()
        .as_der()
        .map_err(|_| invalid("public key encoding failed"))?;
    Ok(der.as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_has_go_line_breaks() {
        let text = pem("X", &[0u8; 60]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "-----BEGIN X-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines[2].len(), 16);
        assert_eq!(lines[3], "-----END X-----");
        assert!(text.ends_with('\n'));
    }
}
