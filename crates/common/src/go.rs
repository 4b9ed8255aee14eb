//! Go's `encoding/base64.StdEncoding` as Go's JSON decoder applies it to `[]byte` fields:
//! MarbleRun's clients and manifests are written against it, so every Quarry decoder of those
//! inputs accepts exactly what it accepts: padding required, line breaks (`\r`, `\n`) skipped
//! anywhere, non-zero trailing bits tolerated.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

const STD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// Decodes `text` as Go's `base64.StdEncoding` does.
pub fn decode_std_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    if text.contains(['\r', '\n']) {
        let cleaned: String = text.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
        STD.decode(cleaned)
    } else {
        STD.decode(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_as_go_does() {
        assert_eq!(decode_std_base64("AAEC").unwrap(), vec![0, 1, 2]);
        assert_eq!(decode_std_base64("AA\r\nEC\n").unwrap(), vec![0, 1, 2]);
        assert_eq!(decode_std_base64("AQ==").unwrap(), vec![1]);
        // Trailing bits are not checked.
        assert_eq!(decode_std_base64("AR==").unwrap(), vec![1]);
        // Padding is required; other whitespace and the URL alphabet are not base64.
        assert!(decode_std_base64("AQ").is_err());
        assert!(decode_std_base64("AA EC").is_err());
        assert!(decode_std_base64("-_8=").is_err());
    }
}
