//! MarbleRun's encoders (`pem`, `hex`, `base64`, `raw`, `string`), the sections that offer
//! them, and the byte-level encodings.
//!
//! Every output is written into a buffer allocated at its final size and zeroed on drop, so no
//! copy of key material is left behind by a growing buffer. PEM output is what Go's
//! `pem.EncodeToMemory` writes: `-----BEGIN <label>-----`, the standard base64 of the DER in
//! lines of 64 characters, `-----END <label>-----`, each line ending in LF.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use super::data::SecretBytes;

/// An encoder function available in templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Encoder {
    /// `pem`: a PEM block whose label depends on the part (`CERTIFICATE`, `PUBLIC KEY`,
    /// `PRIVATE KEY`).
    Pem,
    /// `hex`: lower-case hexadecimal.
    Hex,
    /// `base64`: standard base64 with padding.
    Base64,
    /// `raw`: the bytes as they are, binary-safe (`Files` only).
    Raw,
    /// `string`: the bytes of a `plain` secret without NUL bytes (`Env` only).
    String,
}

impl Encoder {
    /// Every encoder.
    pub const ALL: [Encoder; 5] = [
        Encoder::Pem,
        Encoder::Hex,
        Encoder::Base64,
        Encoder::Raw,
        Encoder::String,
    ];

    /// The function name in templates.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pem => "pem",
            Self::Hex => "hex",
            Self::Base64 => "base64",
            Self::Raw => "raw",
            Self::String => "string",
        }
    }

    /// The encoder called `name` in templates.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|encoder| encoder.name() == name)
    }
}

impl fmt::Display for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The templated sections of a Marble's `Parameters`; each offers its own encoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Section {
    /// `Files`: `pem`, `hex`, `raw`, `base64`; output is bytes.
    Files,
    /// `Env`: `pem`, `hex`, `string`, `base64`; output is text without NUL bytes.
    Env,
}

impl Section {
    /// Whether templates in this section may call `encoder`.
    pub fn allows(self, encoder: Encoder) -> bool {
        match (self, encoder) {
            (Self::Files, Encoder::String) | (Self::Env, Encoder::Raw) => false,
            (_, _) => true,
        }
    }

    /// The encoders of this section, for messages.
    pub fn encoders(self) -> &'static str {
        match self {
            Self::Files => "pem, hex, raw or base64",
            Self::Env => "pem, hex, string or base64",
        }
    }

    /// The field name in `Parameters`.
    pub fn field(self) -> &'static str {
        match self {
            Self::Files => "Files",
            Self::Env => "Env",
        }
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.field())
    }
}

/// Lower-case hexadecimal of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> SecretBytes {
    let mut out = Zeroizing::new(vec![0; bytes.len() * 2]);
    // The buffer is exactly twice the input length, which is all `encode_to_slice` requires.
    let _ = hex::encode_to_slice(bytes, &mut out);
    SecretBytes::new(std::mem::take(&mut *out))
}

/// Standard base64 with padding of `bytes`.
pub(crate) fn base64(bytes: &[u8]) -> SecretBytes {
    let mut out = Zeroizing::new(vec![0; base64_len(bytes.len())]);
    // The buffer has the exact encoded length, so encoding cannot run out of space.
    let _ = STANDARD.encode_slice(bytes, &mut out);
    SecretBytes::new(std::mem::take(&mut *out))
}

/// A PEM block with `label` around `der`, exactly as Go's `pem.EncodeToMemory` writes it.
pub(crate) fn pem(label: &str, der: &[u8]) -> SecretBytes {
    const LINE: usize = 64;

    let body = base64(der);
    let body = body.as_bytes();
    let begin = format!("-----BEGIN {label}-----\n");
    let end = format!("-----END {label}-----\n");
    let lines = body.len().div_ceil(LINE);
    let mut out = Zeroizing::new(Vec::with_capacity(
        begin.len() + body.len() + lines + end.len(),
    ));
    out.extend_from_slice(begin.as_bytes());
    for line in body.chunks(LINE) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(end.as_bytes());
    SecretBytes::new(std::mem::take(&mut *out))
}

fn base64_len(len: usize) -> usize {
    len.div_ceil(3) * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_offer_marbleruns_encoders() {
        let offered = |section: Section| {
            Encoder::ALL
                .into_iter()
                .filter(|e| section.allows(*e))
                .map(Encoder::name)
                .collect::<Vec<_>>()
        };
        assert_eq!(offered(Section::Files), ["pem", "hex", "base64", "raw"]);
        assert_eq!(offered(Section::Env), ["pem", "hex", "base64", "string"]);
    }

    #[test]
    fn hex_is_lower_case() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]).as_bytes(), b"00abff");
    }

    #[test]
    fn base64_pads_like_go() {
        for (input, expected) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
        ] {
            assert_eq!(base64(input).as_bytes(), expected.as_bytes());
        }
    }

    #[test]
    fn pem_wraps_at_64_columns_with_lf() {
        let der = [0x5a; 100]; // 136 base64 characters: lines of 64, 64 and 8
        let out = pem("PRIVATE KEY", &der);
        let text = std::str::from_utf8(out.as_bytes()).unwrap();
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines[0], "-----BEGIN PRIVATE KEY-----");
        assert_eq!(
            [lines[1].len(), lines[2].len(), lines[3].len()],
            [64, 64, 8]
        );
        assert_eq!(lines[4], "-----END PRIVATE KEY-----");
        assert_eq!(lines[5], "");
        assert!(!text.contains('\r'));
        assert_eq!(out.len(), out.as_bytes().len());
    }
}
