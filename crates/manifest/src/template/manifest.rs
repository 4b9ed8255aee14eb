//! The template views of a decoded [`Manifest`]: its `Parameters` as template input, its
//! `Secrets` as shapes, and the dry run MarbleRun performs when a manifest is set and when a
//! secret is uploaded.
//!
//! Secrets whose `Type` is not one of the five types get no placeholder: the manifest check
//! (C18) refuses them already, and a template that uses one is then reported as naming an
//! unknown secret.

use std::collections::BTreeMap;

use crate::model;

use super::data::{Secret, SecretType, TemplateData};
use super::error::TemplateErrors;
use super::params::{ParameterValue, Parameters};
use super::shape::SecretShape;

impl From<&model::FileValue> for ParameterValue {
    fn from(value: &model::FileValue) -> Self {
        Self {
            data: value.data.clone(),
            no_templates: value.no_templates,
        }
    }
}

impl From<&model::Parameters> for Parameters {
    fn from(parameters: &model::Parameters) -> Self {
        let values = |map: &BTreeMap<String, model::FileValue>| {
            map.iter()
                .map(|(key, value)| (key.clone(), ParameterValue::from(value)))
                .collect()
        };
        Self {
            files: values(&parameters.files),
            env: values(&parameters.env),
            argv: parameters.argv.clone(),
        }
    }
}

impl SecretType {
    /// The template view of a manifest `Type`; `None` for a type that is unknown or missing.
    pub fn from_model(secret_type: &model::SecretType) -> Option<Self> {
        match secret_type {
            model::SecretType::SymmetricKey => Some(Self::SymmetricKey),
            model::SecretType::CertRsa => Some(Self::CertRsa),
            model::SecretType::CertEcdsa => Some(Self::CertEcdsa),
            model::SecretType::CertEd25519 => Some(Self::CertEd25519),
            model::SecretType::Plain => Some(Self::Plain),
            model::SecretType::Unknown(_) | model::SecretType::Missing => None,
        }
    }
}

impl SecretShape {
    /// The shape of a manifest secret; `None` if its `Type` is unknown or missing.
    pub fn from_model(secret: &model::Secret) -> Option<Self> {
        Some(Self {
            secret_type: SecretType::from_model(&secret.kind)?,
            size: secret.size,
            user_defined: secret.user_defined,
        })
    }
}

/// The template dry run of a whole manifest, as at manifest set (`known` empty) or at secret
/// upload (`known` holding the values being uploaded): every secret is a placeholder of its
/// shape unless `known` has its value, and every `Files` and `Env` value of every Marble is
/// rendered. Reports every failing value with its path.
pub fn dry_run_manifest(
    manifest: &model::Manifest,
    known: &BTreeMap<String, Secret>,
) -> Result<(), TemplateErrors> {
    let shapes: Vec<(&str, SecretShape)> = manifest
        .secrets
        .iter()
        .filter_map(|(name, secret)| Some((name.as_str(), SecretShape::from_model(secret)?)))
        .collect();
    let mut data = TemplateData::placeholders(shapes.iter().map(|(name, shape)| (*name, shape)))?;
    for (name, secret) in known {
        data.set_secret(name, secret.clone());
        data.set_previous(name, secret.clone());
    }

    let parameters: Vec<(&str, Parameters)> = manifest
        .marbles
        .iter()
        .map(|(name, marble)| (name.as_str(), Parameters::from(&marble.parameters)))
        .collect();
    super::dry_run(parameters.iter().map(|(name, p)| (*name, p)), &data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{RenderError, SecretBytes};

    fn manifest(json: &str) -> model::Manifest {
        crate::ManifestDocument::from_json(json)
            .expect("manifest decodes")
            .manifest()
            .clone()
    }

    const MANIFEST: &str = r#"{
        "Packages": {"pkg": {"UniqueID": "00"}},
        "Marbles": {
            "web": {
                "Package": "pkg",
                "Parameters": {
                    "Files": {
                        "/key": "{{ raw .Secrets.key }}",
                        "/cert.pem": {"Data": "e3sgcGVtIC5TZWNyZXRzLmNlcnQuQ2VydCB9fQ==", "Encoding": "base64"},
                        "/literal": {"Data": "{{ kept }}", "NoTemplates": true}
                    },
                    "Env": {"PASSWORD": "{{ string .Secrets.password }}"},
                    "Argv": ["web", "{{ not templated }}"]
                }
            }
        },
        "Secrets": {
            "key": {"Type": "symmetric-key", "Size": 256},
            "cert": {"Type": "cert-ecdsa", "Size": 256, "Shared": true},
            "password": {"Type": "plain", "UserDefined": true}
        }
    }"#;

    #[test]
    fn a_manifest_with_marbleruns_forms_passes() {
        dry_run_manifest(&manifest(MANIFEST), &BTreeMap::new()).unwrap();
    }

    #[test]
    fn an_uploaded_value_replaces_its_placeholder() {
        let known = BTreeMap::from([(
            "password".to_owned(),
            Secret::plain(SecretBytes::from_slice(b"a\0b")),
        )]);
        let errors = dry_run_manifest(&manifest(MANIFEST), &known).unwrap_err();
        assert_eq!(
            errors.problems()[0].path.to_string(),
            r#"Marbles["web"].Parameters.Env["PASSWORD"]"#
        );
        assert!(matches!(
            errors.problems()[0].cause,
            RenderError::NulInString { .. }
        ));
    }

    #[test]
    fn decoded_parameters_keep_data_and_no_templates() {
        let manifest = manifest(MANIFEST);
        let parameters = Parameters::from(&manifest.marbles["web"].parameters);
        assert_eq!(
            parameters.files["/cert.pem"].data,
            b"{{ pem .Secrets.cert.Cert }}"
        );
        assert!(parameters.files["/literal"].no_templates);
        assert_eq!(parameters.argv, ["web", "{{ not templated }}"]);
    }
}
