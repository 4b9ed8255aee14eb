//! The values of a Marble's `Parameters`: `Files` and `Env` entries in their string and object
//! forms (`Data`, `Encoding`, `NoTemplates`), and `Argv`.
//!
//! MarbleRun decodes `Data` when the manifest is read (`Encoding` `string`, `base64` or `hex`,
//! matched case-insensitively, empty meaning `string`) and applies templates to the decoded
//! bytes, unless `NoTemplates` is set. The decoders here accept what Go's decoders accept:
//! standard base64 with padding, ignoring CR and LF and tolerating non-zero trailing bits;
//! hexadecimal in either case.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// How a parameter's `Data` is written in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Encoding {
    /// `string` (or empty): the data is the text itself.
    #[default]
    String,
    /// `base64`: standard base64 with padding.
    Base64,
    /// `hex`: hexadecimal, either case.
    Hex,
}

/// Why a parameter's `Data` cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// `Encoding` is none of `string`, `base64`, `hex`.
    #[error("unknown encoding {0:?}: expected string, base64 or hex")]
    UnknownEncoding(String),
    /// `Data` is not valid base64.
    #[error("data is not valid base64: {0}")]
    Base64(String),
    /// `Data` is not valid hexadecimal.
    #[error("data is not valid hex: {0}")]
    Hex(String),
}

impl Encoding {
    /// The canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Base64 => "base64",
            Self::Hex => "hex",
        }
    }

    /// Decodes `data` written in this encoding.
    pub fn decode(self, data: &str) -> Result<Vec<u8>, DecodeError> {
        match self {
            Self::String => Ok(data.as_bytes().to_vec()),
            Self::Base64 => quarry_common::go::decode_std_base64(data)
                .map_err(|e| DecodeError::Base64(e.to_string())),
            Self::Hex => hex::decode(data).map_err(|e| DecodeError::Hex(e.to_string())),
        }
    }
}

impl FromStr for Encoding {
    type Err = DecodeError;

    /// Parses a manifest `Encoding`: case-insensitive, empty meaning `string`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::String, Self::Base64, Self::Hex]
            .into_iter()
            .find(|encoding| s.is_empty() || s.eq_ignore_ascii_case(encoding.as_str()))
            .ok_or_else(|| DecodeError::UnknownEncoding(s.to_owned()))
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `Files` or `Env` entry: the decoded data and whether templates apply to it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParameterValue {
    /// The decoded `Data` (template source unless `no_templates`).
    pub data: Vec<u8>,
    /// `NoTemplates`: pass `data` through verbatim.
    pub no_templates: bool,
}

impl ParameterValue {
    /// The string form (`"path": "text"`): templates apply.
    pub fn template(text: &str) -> Self {
        Self {
            data: text.as_bytes().to_vec(),
            no_templates: false,
        }
    }

    /// The object form (`{"Data": ..., "Encoding": ..., "NoTemplates": ...}`), decoding `data`.
    pub fn from_object(
        data: &str,
        encoding: Encoding,
        no_templates: bool,
    ) -> Result<Self, DecodeError> {
        Ok(Self {
            data: encoding.decode(data)?,
            no_templates,
        })
    }
}

/// A Marble's `Parameters`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parameters {
    /// `Files`: path inside the enclave → value.
    pub files: BTreeMap<String, ParameterValue>,
    /// `Env`: variable name → value.
    pub env: BTreeMap<String, ParameterValue>,
    /// `Argv`: the command line, never templated.
    pub argv: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_names_are_case_insensitive_and_empty_means_string() {
        assert_eq!("".parse(), Ok(Encoding::String));
        assert_eq!("BASE64".parse(), Ok(Encoding::Base64));
        assert_eq!("Hex".parse(), Ok(Encoding::Hex));
        assert_eq!(
            "utf8".parse::<Encoding>(),
            Err(DecodeError::UnknownEncoding("utf8".into()))
        );
    }

    #[test]
    fn base64_decodes_like_go_std_encoding() {
        assert_eq!(Encoding::Base64.decode("aGVs\nbG8=").unwrap(), b"hello");
        // Go's StdEncoding is not strict: non-zero trailing bits are accepted.
        assert_eq!(Encoding::Base64.decode("aGVsbG9=").unwrap(), b"hello");
        assert!(
            Encoding::Base64.decode("aGVsbG8").is_err(),
            "padding is required"
        );
        assert!(Encoding::Base64.decode("a*==").is_err());
    }

    #[test]
    fn hex_decodes_either_case() {
        assert_eq!(Encoding::Hex.decode("00aBFf").unwrap(), [0, 0xab, 0xff]);
        assert!(matches!(
            Encoding::Hex.decode("abc"),
            Err(DecodeError::Hex(_))
        ));
    }

    #[test]
    fn object_form_decodes_data() {
        let value = ParameterValue::from_object("e3s=", Encoding::Base64, true).unwrap();
        assert_eq!(value.data, b"{{");
        assert!(value.no_templates);
    }
}
