//! A manifest as uploaded: the exact bytes, the decoded [`Manifest`], and the warnings of the
//! decoding.
//!
//! The bytes are the manifest's identity: the fingerprint is the lower-case hex SHA-256 of
//! exactly those bytes, as MarbleRun computes it. YAML is converted to the compact, key-sorted
//! JSON that MarbleRun's CLI uploads, and that JSON is the document's bytes.

use std::fmt;

use quarry_common::DocPath;

use crate::cert::decode_cert;
use crate::decode::{Decoder, FieldError, Warning, decode_std_base64};
use crate::model::{
    Config, FileValue, Infrastructure, Manifest, Marble, Package, Parameters, Role, Secret,
    SecretBytes, SecretType, TlsTag, TlsTagEntry, User,
};
use crate::node::{self, Format, Node, SyntaxError};

/// Why a document is not a manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The text is not JSON or YAML, is too large or too deep, or repeats a key.
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
    /// Values of the wrong type or form; every one found is listed.
    #[error("{}", list(.0))]
    Invalid(Vec<FieldError>),
}

fn list(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The error for a document that is neither JSON nor UTF-8 text (YAML must be UTF-8), with the
/// line and column of the first byte that is not UTF-8.
fn not_utf8(bytes: &[u8], valid_up_to: usize) -> SyntaxError {
    let before = &bytes[..valid_up_to];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(valid_up_to, |newline| valid_up_to - newline - 1)
        + 1;
    SyntaxError::Invalid {
        format: Format::Yaml,
        message: format!("invalid utf-8 at line {line} column {column}"),
    }
}

/// A decoded manifest with the bytes it came from.
#[derive(Clone, PartialEq)]
pub struct ManifestDocument {
    raw: Vec<u8>,
    manifest: Manifest,
    warnings: Vec<Warning>,
}

impl ManifestDocument {
    /// Decodes JSON bytes, as the Coordinator receives them.
    pub fn from_json(raw: impl Into<Vec<u8>>) -> Result<Self, DecodeError> {
        let raw = raw.into();
        let node = node::parse_json(&raw)?;
        Self::from_node(raw, &node)
    }

    /// Decodes YAML text; the document's bytes become the canonical JSON of its value.
    pub fn from_yaml(text: &str) -> Result<Self, DecodeError> {
        let node = node::parse_yaml(text)?;
        Self::from_node(node::to_canonical_json(&node), &node)
    }

    /// Decodes a file as MarbleRun's CLI reads one: unchanged if it is JSON, converted if it is
    /// YAML. When neither parser accepts it, the error is the JSON one for text that starts like
    /// JSON (`{` or `[`), the YAML one otherwise.
    pub fn from_file_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let json_err = match node::parse_json(bytes) {
            Ok(node) => return Self::from_node(bytes.to_vec(), &node),
            Err(e) => e,
        };
        let looks_like_json = bytes
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| matches!(b, b'{' | b'['));
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(_) if looks_like_json => return Err(json_err.into()),
            Err(e) => return Err(not_utf8(bytes, e.valid_up_to()).into()),
        };
        match Self::from_yaml(text) {
            Ok(doc) => Ok(doc),
            Err(_) if looks_like_json => Err(json_err.into()),
            Err(e) => Err(e),
        }
    }

    fn from_node(raw: Vec<u8>, node: &Node) -> Result<Self, DecodeError> {
        let mut d = Decoder::default();
        let manifest = decode_manifest(&mut d, node);
        if !d.errors.is_empty() {
            return Err(DecodeError::Invalid(d.errors));
        }
        Ok(Self {
            raw,
            manifest,
            warnings: d.warnings,
        })
    }

    /// The bytes as uploaded (for YAML input, the converted JSON).
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// Lower-case hex SHA-256 of [`ManifestDocument::raw`].
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.raw)
    }

    /// The decoded manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Keys and values that were accepted without effect.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// The decoded manifest, giving up the bytes.
    pub fn into_manifest(self) -> Manifest {
        self.manifest
    }
}

impl fmt::Debug for ManifestDocument {
    // The raw bytes may carry initial values of user-defined secrets (`Private`): show their
    // fingerprint only; the decoded model redacts secret bytes itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManifestDocument")
            .field("fingerprint", &self.fingerprint())
            .field("manifest", &self.manifest)
            .field("warnings", &self.warnings)
            .finish()
    }
}

impl fmt::Display for ManifestDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "manifest {}", self.fingerprint())
    }
}

/// Lower-case hex SHA-256 of `bytes`: a manifest's fingerprint.
pub fn fingerprint(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

pub(crate) fn decode_manifest(d: &mut Decoder, node: &Node) -> Manifest {
    let mut m = Manifest::default();
    let root = DocPath::root();
    if !matches!(node, Node::Object(_) | Node::Null) {
        d.error(&root, format!("expected an object, found {}", node.kind()));
        return m;
    }
    let names = [
        "Packages",
        "Infrastructures",
        "Marbles",
        "Users",
        "Secrets",
        "RecoveryKeys",
        "Roles",
        "TLS",
        "Config",
    ];
    d.fields(node, &root, &names, |d, name, v, p| match name {
        "Packages" => m.packages = d.map(v, p, decode_package),
        "Infrastructures" => m.infrastructures = d.map(v, p, decode_infrastructure),
        "Marbles" => m.marbles = d.map(v, p, decode_marble),
        "Users" => m.users = d.map(v, p, decode_user),
        "Secrets" => m.secrets = d.map(v, p, decode_secret),
        "RecoveryKeys" => m.recovery_keys = d.map(v, p, |d, v, p| d.string(v, p)),
        "Roles" => m.roles = d.map(v, p, decode_role),
        "TLS" => m.tls = d.map(v, p, decode_tls_tag),
        _ => m.config = decode_config(d, v, p),
    });
    m
}

fn decode_package(d: &mut Decoder, node: &Node, path: &DocPath) -> Package {
    let mut p = Package::default();
    let names = [
        "Debug",
        "UniqueID",
        "SignerID",
        "ProductID",
        "SecurityVersion",
        "AcceptedTCBStatuses",
        "AcceptedAdvisories",
    ];
    d.fields(node, path, &names, |d, name, v, at| match name {
        "Debug" => p.debug = d.bool(v, at),
        "UniqueID" => p.unique_id = d.string(v, at),
        "SignerID" => p.signer_id = d.string(v, at),
        "ProductID" => p.product_id = d.opt_uint(v, at),
        "SecurityVersion" => p.security_version = d.opt_uint(v, at),
        "AcceptedTCBStatuses" => p.accepted_tcb_statuses = d.strings(v, at),
        _ => p.accepted_advisories = d.strings(v, at),
    });
    p
}

fn decode_infrastructure(d: &mut Decoder, node: &Node, path: &DocPath) -> Infrastructure {
    let mut i = Infrastructure::default();
    let names = ["CPUSVN", "QESVN", "PCESVN", "RootCA"];
    d.fields(node, path, &names, |d, name, v, p| match name {
        "CPUSVN" => i.cpusvn = d.bytes(v, p),
        "QESVN" => i.qesvn = d.opt_u16(v, p),
        "PCESVN" => i.pcesvn = d.opt_u16(v, p),
        _ => i.root_ca = d.bytes(v, p),
    });
    i
}

fn decode_marble(d: &mut Decoder, node: &Node, path: &DocPath) -> Marble {
    let mut m = Marble::default();
    let names = [
        "Package",
        "MaxActivations",
        "Parameters",
        "TLS",
        "DisableSecretBinding",
    ];
    d.fields(node, path, &names, |d, name, v, p| match name {
        "Package" => m.package = d.string(v, p),
        "MaxActivations" => m.max_activations = d.uint(v, p),
        "Parameters" => m.parameters = decode_parameters(d, v, p),
        "TLS" => m.tls = d.strings(v, p),
        _ => m.disable_secret_binding = d.bool(v, p),
    });
    m
}

fn decode_parameters(d: &mut Decoder, node: &Node, path: &DocPath) -> Parameters {
    let mut params = Parameters::default();
    d.fields(
        node,
        path,
        &["Files", "Env", "Argv"],
        |d, name, v, p| match name {
            "Files" => params.files = d.map(v, p, decode_file_value),
            "Env" => params.env = d.map(v, p, decode_file_value),
            _ => params.argv = d.strings(v, p),
        },
    );
    params
}

/// A `Files` or `Env` value: a string, or `{Data, Encoding, NoTemplates}` with `Data` decoded
/// according to `Encoding` (`string`, `base64` or `hex`, matched case-insensitively).
fn decode_file_value(d: &mut Decoder, node: &Node, path: &DocPath) -> FileValue {
    match node {
        Node::String(s) => return FileValue::plain(s.as_bytes()),
        Node::Object(_) => {}
        other => {
            d.error(
                path,
                format!(
                    "expected a string or an object with Data, Encoding and NoTemplates, found {}",
                    other.kind()
                ),
            );
            return FileValue::plain(Vec::new());
        }
    }
    let (mut data, mut encoding, mut no_templates) = (String::new(), String::new(), false);
    d.fields(
        node,
        path,
        &["Data", "Encoding", "NoTemplates"],
        |d, name, v, p| match name {
            "Data" => data = d.string(v, p),
            "Encoding" => encoding = d.string(v, p),
            _ => no_templates = d.bool(v, p),
        },
    );
    if encoding.is_empty() {
        encoding = "string".to_owned();
    }
    let decoded = if encoding.eq_ignore_ascii_case("string") {
        Ok(data.into_bytes())
    } else if encoding.eq_ignore_ascii_case("base64") {
        decode_std_base64(&data).map_err(|e| format!("invalid base64: {e}"))
    } else if encoding.eq_ignore_ascii_case("hex") {
        hex::decode(&data).map_err(|e| format!("invalid hex: {e}"))
    } else {
        d.error(
            &path.field("Encoding"),
            format!("unknown encoding {encoding:?} (expected string, base64 or hex)"),
        );
        Ok(Vec::new())
    };
    let data = decoded.unwrap_or_else(|message| {
        d.error(&path.field("Data"), message);
        Vec::new()
    });
    FileValue {
        data,
        encoding,
        no_templates,
    }
}

fn decode_secret(d: &mut Decoder, node: &Node, path: &DocPath) -> Secret {
    let mut s = Secret::default();
    let names = [
        "Type",
        "Size",
        "Shared",
        "UserDefined",
        "Cert",
        "ValidFor",
        "Private",
        "Public",
    ];
    d.fields(node, path, &names, |d, name, v, p| match name {
        "Type" => s.kind = SecretType::parse(&d.string(v, p)),
        "Size" => s.size = d.uint(v, p),
        "Shared" => s.shared = d.bool(v, p),
        "UserDefined" => s.user_defined = d.bool(v, p),
        "Cert" => s.cert = decode_cert(d, v, p),
        "ValidFor" => s.valid_for = d.uint(v, p),
        "Private" => s.private = d.opt_bytes(v, p).map(SecretBytes::new),
        _ => s.public = d.opt_bytes(v, p).map(SecretBytes::new),
    });
    s
}

fn decode_user(d: &mut Decoder, node: &Node, path: &DocPath) -> User {
    let mut u = User::default();
    d.fields(
        node,
        path,
        &["Certificate", "Roles"],
        |d, name, v, p| match name {
            "Certificate" => u.certificate = d.string(v, p),
            _ => u.roles = d.strings(v, p),
        },
    );
    u
}

fn decode_role(d: &mut Decoder, node: &Node, path: &DocPath) -> Role {
    let mut r = Role::default();
    let names = ["ResourceType", "ResourceNames", "Actions"];
    d.fields(node, path, &names, |d, name, v, p| match name {
        "ResourceType" => r.resource_type = d.string(v, p),
        "ResourceNames" => r.resource_names = d.strings(v, p),
        _ => r.actions = d.strings(v, p),
    });
    r
}

fn decode_tls_tag(d: &mut Decoder, node: &Node, path: &DocPath) -> TlsTag {
    let mut t = TlsTag::default();
    d.fields(
        node,
        path,
        &["Outgoing", "Incoming"],
        |d, name, v, p| match name {
            "Outgoing" => t.outgoing = d.list(v, p, decode_tls_entry),
            _ => t.incoming = d.list(v, p, decode_tls_entry),
        },
    );
    t
}

fn decode_tls_entry(d: &mut Decoder, node: &Node, path: &DocPath) -> TlsTagEntry {
    let mut e = TlsTagEntry::default();
    let names = ["Port", "Addr", "Cert", "DisableClientAuth"];
    d.fields(node, path, &names, |d, name, v, p| match name {
        "Port" => e.port = d.string(v, p),
        "Addr" => e.addr = d.string(v, p),
        "Cert" => e.cert = d.string(v, p),
        _ => e.disable_client_auth = d.bool(v, p),
    });
    e
}

fn decode_config(d: &mut Decoder, node: &Node, path: &DocPath) -> Config {
    let mut c = Config::default();
    let names = [
        "SealMode",
        "FeatureGates",
        "UpdateThreshold",
        "RecoveryThreshold",
        "RotateRootSecret",
    ];
    d.fields(node, path, &names, |d, name, v, p| match name {
        "SealMode" => c.seal_mode = d.string(v, p),
        "FeatureGates" => c.feature_gates = d.strings(v, p),
        "UpdateThreshold" => c.update_threshold = d.uint(v, p),
        "RecoveryThreshold" => c.recovery_threshold = d.uint(v, p),
        _ => c.rotate_root_secret = d.bool(v, p),
    });
    c
}
