//! Byte layouts of `sealed_data`, `sealed_key` and the frames inside `sealed_key`, with parsers
//! that accept exactly what the writers produce and name what is wrong with anything else.
//!
//! All integers are little-endian. Every file and every frame starts with a magic value and a
//! format version.
//!
//! ```text
//! sealed_data  = "QUARRYSD" | u16 version=1 | u32 len(R) | R | nonce(12) | AES-256-GCM(state)
//!                (additional data: everything before the nonce)
//! sealed_key   = "QUARRYSK" | u16 version=1 | frame
//! frame        = enclave frame | HSM frame
//! enclave      = "QSEL" | u16 version=1 | u8 policy (1 ProductKey, 2 UniqueKey) | nonce(12)
//!                | AES-256-GCM(data key)   (additional data: SHA-256 of sealed_data)
//! HSM          = "QHSM" | u16 version=1 | str vault host | str key name | str key version
//!                | nonce(12) | AES-GCM(inner frame)   (additional data: everything before the
//!                ciphertext)
//! str          = u16 length | UTF-8 bytes
//! ```
//!
//! A wrap layer's frame carries the frame it wraps as its plaintext, so layers nest; only the
//! outermost layer can be read before anything is decrypted. The parsers never panic and never
//! allocate more than the input's size.

use std::fmt;

use quarry_enclave::SealPolicy;

use crate::crypto::{DATA_KEY_LEN, NONCE, TAG};

/// Magic value at the start of `sealed_data`.
pub const SEALED_DATA_MAGIC: &[u8; 8] = b"QUARRYSD";
/// Magic value at the start of `sealed_key`.
pub const SEALED_KEY_MAGIC: &[u8; 8] = b"QUARRYSK";
/// Magic value of the enclave seal frame.
pub const ENCLAVE_FRAME_MAGIC: &[u8; 4] = b"QSEL";
/// Magic value of the HSM wrap frame.
pub const HSM_FRAME_MAGIC: &[u8; 4] = b"QHSM";
/// The format version that this crate writes and reads, for files and frames alike.
pub const FORMAT_VERSION: u16 = 1;

/// Longest vault host name (a DNS name).
pub const MAX_VAULT_HOST_LEN: usize = 253;
/// Longest key name (Key Vault allows 127 characters).
pub const MAX_KEY_NAME_LEN: usize = 127;
/// Longest key version.
pub const MAX_KEY_VERSION_LEN: usize = 64;
/// Most wrap layers around the enclave frame.
pub const MAX_WRAP_LAYERS: usize = 4;

/// Length of the enclave frame: magic, version, policy, nonce, sealed data key and tag.
const ENCLAVE_FRAME_LEN: usize = 4 + 2 + 1 + NONCE + DATA_KEY_LEN + TAG;

/// What is wrong with a file or frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The input has no bytes at all.
    #[error("{what} is empty")]
    Empty {
        /// What was parsed.
        what: &'static str,
    },
    /// The input ends before a field does.
    #[error("{what} is truncated: {field} needs {need} bytes, {have} left")]
    Truncated {
        /// What was parsed.
        what: &'static str,
        /// The field that does not fit.
        field: &'static str,
        /// Bytes the field needs.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// The input starts with the other sealed file's magic value: the files were swapped.
    #[error("{what} holds a {found} file (swapped files?)")]
    Swapped {
        /// What was parsed.
        what: &'static str,
        /// What the content is.
        found: &'static str,
    },
    /// The input does not start with the expected magic value.
    #[error("{what} has magic {found}, expected {expected}")]
    BadMagic {
        /// What was parsed.
        what: &'static str,
        /// The magic value expected, printable.
        expected: String,
        /// The bytes found, printable.
        found: String,
    },
    /// The format version is not one this build reads.
    #[error("{what} has format version {version}, this build reads version {FORMAT_VERSION}")]
    UnsupportedVersion {
        /// What was parsed.
        what: &'static str,
        /// The version found.
        version: u16,
    },
    /// A field has a value outside its range.
    #[error("{what}: invalid {field}: {reason}")]
    InvalidField {
        /// What was parsed.
        what: &'static str,
        /// The field.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// Bytes follow the end of a frame that has a fixed length.
    #[error("{what} has {count} unexpected bytes at its end")]
    TrailingBytes {
        /// What was parsed.
        what: &'static str,
        /// How many bytes.
        count: usize,
    },
    /// A frame inside `sealed_key` has a magic value that no layer uses.
    #[error("unknown layer frame with magic {magic}")]
    UnknownLayer {
        /// The magic value, printable.
        magic: String,
    },
    /// More wrap layers than [`MAX_WRAP_LAYERS`].
    #[error("more than {MAX_WRAP_LAYERS} wrap layers")]
    TooManyLayers,
}

/// Identifies the Managed HSM key that wraps a sealed key: written in the clear in the HSM
/// frame, so that the Coordinator can ask for exactly this key version before unwrapping.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HsmKeyRef {
    /// Host name of the vault (`myhsm.managedhsm.azure.net`).
    pub vault_host: String,
    /// Name of the key.
    pub key_name: String,
    /// Version of the key.
    pub key_version: String,
}

impl fmt::Display for HsmKeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "https://{}/keys/{}/{}",
            self.vault_host, self.key_name, self.key_version
        )
    }
}

/// The parsed `sealed_data` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedData<'a> {
    /// Everything before the nonce; the additional data of the state's encryption.
    pub header: &'a [u8],
    /// The recovery data, stored unencrypted.
    pub recovery_data: &'a [u8],
    /// The nonce of the state's encryption.
    pub nonce: [u8; NONCE],
    /// The encrypted state followed by its tag.
    pub ciphertext: &'a [u8],
}

impl<'a> SealedData<'a> {
    /// Parses a `sealed_data` file.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FrameError> {
        const WHAT: &str = "sealed_data";
        let mut r = Reader::new(WHAT, bytes)?;
        r.file_magic(SEALED_DATA_MAGIC, SEALED_KEY_MAGIC, "sealed_key")?;
        r.version()?;
        let len = r.u32("recovery data length")? as usize;
        let recovery_data = r.take("recovery data", len)?;
        let header = &bytes[..r.pos];
        let nonce = r.nonce()?;
        let ciphertext = r.rest_at_least("state ciphertext", TAG)?;
        Ok(Self {
            header,
            recovery_data,
            nonce,
            ciphertext,
        })
    }

    /// The header of a `sealed_data` file with this recovery data (everything before the
    /// nonce).
    pub(crate) fn header_for(recovery_data: &[u8]) -> Result<Vec<u8>, FrameError> {
        let len = u32::try_from(recovery_data.len()).map_err(|_| FrameError::InvalidField {
            what: "sealed_data",
            field: "recovery data",
            reason: format!("{} bytes do not fit a 32-bit length", recovery_data.len()),
        })?;
        let mut out = Vec::with_capacity(14 + recovery_data.len());
        out.extend_from_slice(SEALED_DATA_MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(recovery_data);
        Ok(out)
    }
}

/// One frame inside `sealed_key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// The data key sealed with the enclave's seal key: the innermost frame.
    Enclave(EnclaveFrame<'a>),
    /// A wrap layer with a Managed HSM key around another frame.
    Hsm(HsmFrame<'a>),
}

impl<'a> Frame<'a> {
    /// Parses one frame that spans all of `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FrameError> {
        match bytes.get(..4) {
            Some(magic) if magic == ENCLAVE_FRAME_MAGIC => {
                EnclaveFrame::parse(bytes).map(Frame::Enclave)
            }
            Some(magic) if magic == HSM_FRAME_MAGIC => HsmFrame::parse(bytes).map(Frame::Hsm),
            Some(magic) => Err(FrameError::UnknownLayer {
                magic: printable(magic),
            }),
            None if bytes.is_empty() => Err(FrameError::Empty {
                what: "layer frame",
            }),
            None => Err(FrameError::Truncated {
                what: "layer frame",
                field: "magic",
                need: 4,
                have: bytes.len(),
            }),
        }
    }
}

/// Parses a `sealed_key` file and returns its outermost frame.
pub fn parse_sealed_key(bytes: &[u8]) -> Result<Frame<'_>, FrameError> {
    let mut r = Reader::new("sealed_key", bytes)?;
    r.file_magic(SEALED_KEY_MAGIC, SEALED_DATA_MAGIC, "sealed_data")?;
    r.version()?;
    Frame::parse(&bytes[r.pos..])
}

/// The header of a `sealed_key` file, followed by the outermost frame.
pub(crate) fn sealed_key_file(frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + frame.len());
    out.extend_from_slice(SEALED_KEY_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(frame);
    out
}

/// The data key sealed with the enclave's seal key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnclaveFrame<'a> {
    /// Which seal key sealed it.
    pub policy: SealPolicy,
    /// The nonce.
    pub nonce: [u8; NONCE],
    /// The sealed data key followed by its tag.
    pub ciphertext: &'a [u8],
}

impl<'a> EnclaveFrame<'a> {
    /// Parses an enclave frame, which has a fixed length.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FrameError> {
        const WHAT: &str = "enclave frame";
        let mut r = Reader::new(WHAT, bytes)?;
        r.frame_magic(ENCLAVE_FRAME_MAGIC)?;
        r.version()?;
        let policy = match r.u8("seal policy")? {
            1 => SealPolicy::ProductKey,
            2 => SealPolicy::UniqueKey,
            other => {
                return Err(FrameError::InvalidField {
                    what: WHAT,
                    field: "seal policy",
                    reason: format!("{other} is neither 1 (ProductKey) nor 2 (UniqueKey)"),
                });
            }
        };
        let nonce = r.nonce()?;
        let ciphertext = r.take("sealed data key", DATA_KEY_LEN + TAG)?;
        r.finish()?;
        Ok(Self {
            policy,
            nonce,
            ciphertext,
        })
    }

    /// An enclave frame around `ciphertext`.
    pub(crate) fn encode(policy: SealPolicy, nonce: &[u8; NONCE], ciphertext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENCLAVE_FRAME_LEN);
        out.extend_from_slice(ENCLAVE_FRAME_MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.push(match policy {
            SealPolicy::ProductKey => 1,
            SealPolicy::UniqueKey => 2,
        });
        out.extend_from_slice(nonce);
        out.extend_from_slice(ciphertext);
        out
    }
}

/// A wrap layer with a Managed HSM key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HsmFrame<'a> {
    /// The key that wrapped this layer.
    pub key: HsmKeyRef,
    /// Everything before the ciphertext; the additional data of the encryption.
    pub header: &'a [u8],
    /// The nonce.
    pub nonce: [u8; NONCE],
    /// The wrapped inner frame followed by its tag.
    pub ciphertext: &'a [u8],
}

impl<'a> HsmFrame<'a> {
    /// Parses an HSM frame; its ciphertext runs to the end of `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FrameError> {
        const WHAT: &str = "HSM frame";
        let mut r = Reader::new(WHAT, bytes)?;
        r.frame_magic(HSM_FRAME_MAGIC)?;
        r.version()?;
        let vault_host = r.string("vault host", MAX_VAULT_HOST_LEN)?;
        let key_name = r.string("key name", MAX_KEY_NAME_LEN)?;
        let key_version = r.string("key version", MAX_KEY_VERSION_LEN)?;
        let key = HsmKeyRef {
            vault_host,
            key_name,
            key_version,
        };
        let nonce = r.nonce()?;
        let header = &bytes[..r.pos];
        let ciphertext = r.rest_at_least("wrapped frame", TAG + 1)?;
        Ok(Self {
            key,
            header,
            nonce,
            ciphertext,
        })
    }

    /// The header of an HSM frame (everything before the ciphertext).
    pub(crate) fn header_for(key: &HsmKeyRef, nonce: &[u8; NONCE]) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(HSM_FRAME_MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        for (field, value, max) in [
            ("vault host", &key.vault_host, MAX_VAULT_HOST_LEN),
            ("key name", &key.key_name, MAX_KEY_NAME_LEN),
            ("key version", &key.key_version, MAX_KEY_VERSION_LEN),
        ] {
            check_name("HSM frame", field, value, max)?;
            // `check_name` bounds the length far below u16::MAX.
            out.extend_from_slice(&(value.len() as u16).to_le_bytes());
            out.extend_from_slice(value.as_bytes());
        }
        out.extend_from_slice(nonce);
        Ok(out)
    }
}

/// Checks a name written into a frame: not empty, at most `max` bytes, printable ASCII without
/// spaces.
fn check_name(
    what: &'static str,
    field: &'static str,
    value: &str,
    max: usize,
) -> Result<(), FrameError> {
    let invalid = |reason: String| FrameError::InvalidField {
        what,
        field,
        reason,
    };
    if value.is_empty() {
        return Err(invalid("empty".into()));
    }
    if value.len() > max {
        return Err(invalid(format!(
            "{} bytes, at most {max} allowed",
            value.len()
        )));
    }
    if let Some(c) = value.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(invalid(format!("{c:?} is not a printable ASCII character")));
    }
    Ok(())
}

/// Printable form of a magic value: ASCII as is, anything else as hex.
fn printable(bytes: &[u8]) -> String {
    if bytes.iter().all(|b| b.is_ascii_graphic()) {
        format!("{:?}", String::from_utf8_lossy(bytes))
    } else {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A cursor over untrusted bytes that names the field that does not fit.
struct Reader<'a> {
    what: &'static str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(what: &'static str, bytes: &'a [u8]) -> Result<Self, FrameError> {
        if bytes.is_empty() {
            return Err(FrameError::Empty { what });
        }
        Ok(Self {
            what,
            bytes,
            pos: 0,
        })
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, field: &'static str, len: usize) -> Result<&'a [u8], FrameError> {
        if len > self.remaining() {
            return Err(FrameError::Truncated {
                what: self.what,
                field,
                need: len,
                have: self.remaining(),
            });
        }
        let out = &self.bytes[self.pos..self.pos + len];
        self.pos += len;
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, FrameError> {
        Ok(self.take(field, 1)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, FrameError> {
        let b = self.take(field, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, FrameError> {
        let b = self.take(field, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn nonce(&mut self) -> Result<[u8; NONCE], FrameError> {
        let mut nonce = [0u8; NONCE];
        nonce.copy_from_slice(self.take("nonce", NONCE)?);
        Ok(nonce)
    }

    fn version(&mut self) -> Result<(), FrameError> {
        match self.u16("format version")? {
            FORMAT_VERSION => Ok(()),
            version => Err(FrameError::UnsupportedVersion {
                what: self.what,
                version,
            }),
        }
    }

    fn file_magic(
        &mut self,
        expected: &[u8; 8],
        other: &[u8; 8],
        other_name: &'static str,
    ) -> Result<(), FrameError> {
        let found = self.take("magic", 8)?;
        if found == expected {
            Ok(())
        } else if found == other {
            Err(FrameError::Swapped {
                what: self.what,
                found: other_name,
            })
        } else {
            Err(FrameError::BadMagic {
                what: self.what,
                expected: printable(expected),
                found: printable(found),
            })
        }
    }

    fn frame_magic(&mut self, expected: &[u8; 4]) -> Result<(), FrameError> {
        let found = self.take("magic", 4)?;
        if found == expected {
            return Ok(());
        }
        Err(FrameError::BadMagic {
            what: self.what,
            expected: printable(expected),
            found: printable(found),
        })
    }

    fn string(&mut self, field: &'static str, max: usize) -> Result<String, FrameError> {
        let len = self.u16(field)? as usize;
        let bytes = self.take(field, len)?;
        let value = std::str::from_utf8(bytes).map_err(|_| FrameError::InvalidField {
            what: self.what,
            field,
            reason: "not UTF-8".into(),
        })?;
        check_name(self.what, field, value, max)?;
        Ok(value.to_owned())
    }

    fn rest_at_least(&mut self, field: &'static str, min: usize) -> Result<&'a [u8], FrameError> {
        if self.remaining() < min {
            return Err(FrameError::Truncated {
                what: self.what,
                field,
                need: min,
                have: self.remaining(),
            });
        }
        let rest = &self.bytes[self.pos..];
        self.pos = self.bytes.len();
        Ok(rest)
    }

    fn finish(&self) -> Result<(), FrameError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(FrameError::TrailingBytes {
                what: self.what,
                count,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_ref() -> HsmKeyRef {
        HsmKeyRef {
            vault_host: "quarry.managedhsm.azure.net".into(),
            key_name: "seal".into(),
            key_version: "0123456789abcdef".into(),
        }
    }

    fn sealed_data(recovery: &[u8]) -> Vec<u8> {
        let mut bytes = SealedData::header_for(recovery).unwrap();
        bytes.extend_from_slice(&[7u8; NONCE]);
        bytes.extend_from_slice(&[9u8; 40]);
        bytes
    }

    #[test]
    fn sealed_data_round_trip() {
        let bytes = sealed_data(b"null");
        let parsed = SealedData::parse(&bytes).unwrap();
        assert_eq!(parsed.recovery_data, b"null");
        assert_eq!(parsed.header.len(), 8 + 2 + 4 + 4);
        assert_eq!(parsed.nonce, [7u8; NONCE]);
        assert_eq!(parsed.ciphertext, &[9u8; 40][..]);
    }

    #[test]
    fn sealed_data_every_truncation_is_an_error() {
        let bytes = sealed_data(b"recovery");
        for len in 0..bytes.len() - 24 {
            assert!(SealedData::parse(&bytes[..len]).is_err(), "length {len}");
        }
        assert_eq!(
            SealedData::parse(&[]),
            Err(FrameError::Empty {
                what: "sealed_data"
            })
        );
    }

    #[test]
    fn recovery_length_beyond_the_file_is_named() {
        let mut bytes = sealed_data(b"");
        bytes[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            SealedData::parse(&bytes),
            Err(FrameError::Truncated {
                field: "recovery data",
                ..
            })
        ));
    }

    #[test]
    fn swapped_files_are_recognised() {
        let data = sealed_data(b"");
        assert_eq!(
            parse_sealed_key(&data),
            Err(FrameError::Swapped {
                what: "sealed_key",
                found: "sealed_data"
            })
        );
        let key = sealed_key_file(&EnclaveFrame::encode(
            SealPolicy::ProductKey,
            &[0; NONCE],
            &[0; DATA_KEY_LEN + TAG],
        ));
        assert_eq!(
            SealedData::parse(&key),
            Err(FrameError::Swapped {
                what: "sealed_data",
                found: "sealed_key"
            })
        );
    }

    #[test]
    fn enclave_frame_round_trip_and_exact_length() {
        let frame =
            EnclaveFrame::encode(SealPolicy::UniqueKey, &[1; NONCE], &[2; DATA_KEY_LEN + TAG]);
        assert_eq!(frame.len(), ENCLAVE_FRAME_LEN);
        let file = sealed_key_file(&frame);
        let Frame::Enclave(parsed) = parse_sealed_key(&file).unwrap() else {
            panic!("expected an enclave frame");
        };
        assert_eq!(parsed.policy, SealPolicy::UniqueKey);
        let mut longer = frame.clone();
        longer.push(0);
        assert_eq!(
            EnclaveFrame::parse(&longer),
            Err(FrameError::TrailingBytes {
                what: "enclave frame",
                count: 1
            })
        );
        let mut bad_policy = frame;
        bad_policy[6] = 3;
        assert!(matches!(
            EnclaveFrame::parse(&bad_policy),
            Err(FrameError::InvalidField {
                field: "seal policy",
                ..
            })
        ));
    }

    #[test]
    fn hsm_frame_exposes_the_key_before_unwrapping() {
        let mut frame = HsmFrame::header_for(&key_ref(), &[3; NONCE]).unwrap();
        let header_len = frame.len();
        frame.extend_from_slice(&[4; 80]);
        let Frame::Hsm(parsed) = Frame::parse(&frame).unwrap() else {
            panic!("expected an HSM frame");
        };
        assert_eq!(parsed.key, key_ref());
        assert_eq!(parsed.header.len(), header_len);
        assert_eq!(parsed.ciphertext.len(), 80);
        assert_eq!(
            parsed.key.to_string(),
            "https://quarry.managedhsm.azure.net/keys/seal/0123456789abcdef"
        );
    }

    #[test]
    fn hsm_frame_fields_are_validated() {
        let mut bad = key_ref();
        bad.key_version = String::new();
        assert!(matches!(
            HsmFrame::header_for(&bad, &[0; NONCE]),
            Err(FrameError::InvalidField {
                field: "key version",
                ..
            })
        ));
        bad = key_ref();
        bad.vault_host = "a b".into();
        assert!(HsmFrame::header_for(&bad, &[0; NONCE]).is_err());
        bad = key_ref();
        bad.key_name = "k".repeat(MAX_KEY_NAME_LEN + 1);
        assert!(HsmFrame::header_for(&bad, &[0; NONCE]).is_err());
    }

    #[test]
    fn unknown_layers_and_versions_are_named() {
        assert_eq!(
            Frame::parse(b"XXXXyyyy"),
            Err(FrameError::UnknownLayer {
                magic: "\"XXXX\"".into()
            })
        );
        let mut frame = HsmFrame::header_for(&key_ref(), &[3; NONCE]).unwrap();
        frame.extend_from_slice(&[4; 80]);
        frame[4] = 2;
        assert_eq!(
            Frame::parse(&frame),
            Err(FrameError::UnsupportedVersion {
                what: "HSM frame",
                version: 2
            })
        );
    }
}
