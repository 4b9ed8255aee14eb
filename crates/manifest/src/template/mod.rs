//! Parameter templates: Go `text/template` semantics with MarbleRun's data model and encoders,
//! and the dry run that checks every template when a manifest is set or a secret is uploaded.
//!
//! A Marble's `Files` and `Env` values are templates over [`TemplateData`] (`.Secrets`,
//! `.Previous.Secrets`, `.MarbleRun`). Secret bytes reach the output only through an encoder:
//! `pem`, `hex`, `base64`, `raw` (`Files` only, binary-safe) and `string` (`Env` only, `plain`
//! secrets without NUL bytes). `Argv` is never templated, and `NoTemplates` values pass
//! through verbatim.
//!
//! Entry points: [`dry_run_manifest`] checks a decoded manifest (at manifest set, and at secret
//! upload with the uploaded values); [`Renderer`] renders one Marble's parameters at
//! activation; [`dry_run`] and [`TemplateData::placeholders`] are the parts both are made of.
//!
//! Where Quarry is stricter than MarbleRun, it refuses at the dry run what MarbleRun would
//! render wrongly or only fail on at activation:
//! - a bare `{{ .Secrets.k }}` (Go would print its struct formatting) is an error, as is
//!   `{{ .Secrets.typo }}` (Go would print `<no value>`);
//! - only the byte parts `.Cert`, `.Public`, `.Private` exist; Go-only artefacts such as
//!   `.Secrets.k.Type` or `.Cert.Subject` are unknown names;
//! - `Env` values must be UTF-8 (the environment is text in Quarry's API).
//!
//! Invariants: the template engine never holds secret bytes (see `engine`); every rendered
//! value is a [`SecretBytes`] or [`SecretString`], zeroed on drop; bad templates yield a
//! [`RenderError`], never a panic; every call is bounded in output size, encoder calls and
//! `range` iterations.

mod data;
mod encode;
mod engine;
mod error;
mod manifest;
mod params;
mod shape;
mod syntax;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use quarry_common::DocPath;

pub use data::{
    MarbleRunSecrets, Part, Secret, SecretBytes, SecretString, SecretType, TemplateData,
    UnknownSecretType,
};
pub use encode::{Encoder, Section};
pub use engine::{MAX_ENCODER_CALLS, MAX_RANGE_ITERATIONS, MAX_RENDERED_BYTES};
pub use error::{RenderError, TemplateErrors, TemplateProblem};
pub use manifest::dry_run_manifest;
pub use params::{DecodeError, Encoding, ParameterValue, Parameters};
pub use shape::{
    MAX_PLACEHOLDER_TOTAL_BYTES, SecretShape, ShapeError, placeholder_data, placeholder_marblerun,
};

/// Renders parameter values over one set of [`TemplateData`].
///
/// Building a renderer prepares the data once; render as many values as needed with it.
pub struct Renderer {
    prepared: Arc<engine::Prepared>,
}

/// A Marble's rendered `Parameters`, as the activation response carries them.
#[derive(Debug, Clone, Default)]
pub struct RenderedParameters {
    /// `Files`: path → content.
    pub files: BTreeMap<String, SecretBytes>,
    /// `Env`: name → value.
    pub env: BTreeMap<String, SecretString>,
    /// `Argv`, unchanged.
    pub argv: Vec<String>,
}

impl Renderer {
    /// A renderer over `data`.
    pub fn new(data: &TemplateData) -> Self {
        Self {
            prepared: Arc::new(engine::Prepared::new(data)),
        }
    }

    /// Renders a `Files` value to bytes.
    pub fn render_file(&self, value: &ParameterValue) -> Result<SecretBytes, RenderError> {
        if value.no_templates {
            return Ok(SecretBytes::from_slice(&value.data));
        }
        engine::render(&self.prepared, &value.data, Section::Files)
    }

    /// Renders an `Env` value to text. The result must hold no NUL byte, which is checked even
    /// for `NoTemplates` values, as in MarbleRun, and must be UTF-8.
    pub fn render_env(&self, value: &ParameterValue) -> Result<SecretString, RenderError> {
        let bytes = if value.no_templates {
            SecretBytes::from_slice(&value.data)
        } else {
            engine::render(&self.prepared, &value.data, Section::Env)?
        };
        env_text(bytes)
    }

    /// An `Argv` entry: never templated, so it is returned as it is.
    pub fn render_argv(&self, arg: &str) -> String {
        arg.to_owned()
    }

    /// Renders all of a Marble's `Parameters`; `at` is the path of the `Parameters` object
    /// (`Marbles["web"].Parameters`), used in the reported problems. Every failing value is
    /// reported, not just the first.
    pub fn render_parameters(
        &self,
        parameters: &Parameters,
        at: &DocPath,
    ) -> Result<RenderedParameters, TemplateErrors> {
        let mut rendered = RenderedParameters {
            argv: parameters
                .argv
                .iter()
                .map(|arg| self.render_argv(arg))
                .collect(),
            ..RenderedParameters::default()
        };
        let mut problems = Vec::new();
        let files = at.field(Section::Files.field());
        for (path, value) in &parameters.files {
            match self.render_file(value) {
                Ok(bytes) => {
                    rendered.files.insert(path.clone(), bytes);
                }
                Err(cause) => problems.push(TemplateProblem::new(files.key(path), cause)),
            }
        }
        let env = at.field(Section::Env.field());
        for (name, value) in &parameters.env {
            match self.render_env(value) {
                Ok(text) => {
                    rendered.env.insert(name.clone(), text);
                }
                Err(cause) => problems.push(TemplateProblem::new(env.key(name), cause)),
            }
        }
        TemplateErrors::from_problems(problems).map_or(Ok(rendered), Err)
    }
}

/// The dry run: renders every `Files` and `Env` value of every Marble over `data` (usually
/// [`TemplateData::placeholders`]) and reports every failing value with its path
/// (`Marbles["web"].Parameters.Env["X"]`).
pub fn dry_run<'a, I>(marbles: I, data: &TemplateData) -> Result<(), TemplateErrors>
where
    I: IntoIterator<Item = (&'a str, &'a Parameters)>,
{
    let renderer = Renderer::new(data);
    let mut problems = Vec::new();
    for (name, parameters) in marbles {
        let at = DocPath::root()
            .field("Marbles")
            .key(name)
            .field("Parameters");
        if let Err(errors) = renderer.render_parameters(parameters, &at) {
            problems.extend(errors.into_problems());
        }
    }
    TemplateErrors::from_problems(problems).map_or(Ok(()), Err)
}

fn env_text(bytes: SecretBytes) -> Result<SecretString, RenderError> {
    if let Some(offset) = bytes.as_bytes().iter().position(|&b| b == 0) {
        return Err(RenderError::NulInEnv { offset });
    }
    match std::str::from_utf8(bytes.as_bytes()) {
        Ok(text) => Ok(SecretString::new(text.to_owned())),
        Err(error) => Err(RenderError::EnvNotUtf8 {
            offset: error.valid_up_to(),
        }),
    }
}
