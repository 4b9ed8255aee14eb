//! Go's `encoding/base64.StdEncoding` as Go's JSON decoder applies it to `[]byte` fields:
//! MarbleRun's clients and manifests are written against it, so every Quarry decoder of those
//! inputs accepts exactly what it accepts: padding required, line breaks (`\r`, `\n`) skipped
//! anywhere, non-zero trailing bits tolerated. Also how that decoder matches object keys to
//! member names ([`json_key_eq`]).

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

/// Whether the JSON object key `key` selects the member `name` (ASCII) in Go's JSON decoder,
/// which compares names folded to upper case after lower case, letter by letter. Besides ASCII
/// case this matches four other letters: KELVIN SIGN (U+212A) as `K`, LATIN SMALL LETTER LONG S
/// (U+017F) as `S`, and LATIN CAPITAL LETTER I WITH DOT ABOVE (U+0130) and LATIN SMALL LETTER
/// DOTLESS I (U+0131) as `I`. A key that Go would take for a member must be taken for it here
/// too, or a body could carry a member that one reader sees and another does not.
pub fn json_key_eq(key: &str, name: &str) -> bool {
    let mut key = key.chars();
    let mut name = name.chars();
    loop {
        match (key.next(), name.next()) {
            (None, None) => return true,
            (Some(k), Some(n)) => {
                let k = match k {
                    '\u{212A}' => 'K',
                    '\u{017F}' => 'S',
                    '\u{0130}' | '\u{0131}' => 'I',
                    k => k.to_ascii_uppercase(),
                };
                if k != n.to_ascii_uppercase() {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keys_fold_as_go_does() {
        assert!(json_key_eq("manifest", "manifest"));
        assert!(json_key_eq("MANIFEST", "manifest"));
        assert!(json_key_eq("manife\u{017F}t", "manifest"));
        assert!(json_key_eq("\u{212A}ey", "key"));
        assert!(json_key_eq("man\u{0131}fest", "manifest"));
        assert!(json_key_eq("MAN\u{0130}FEST", "manifest"));
        assert!(!json_key_eq("manifes", "manifest"));
        assert!(!json_key_eq("manifests", "manifest"));
        assert!(!json_key_eq("man\u{00ED}fest", "manifest"));
        assert!(!json_key_eq("manife\u{00DF}t", "manifest"));
    }

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
