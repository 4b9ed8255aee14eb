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
    eq_folded(key, name, |c| match c {
        '\u{212A}' => 'K',
        '\u{017F}' => 'S',
        '\u{0130}' | '\u{0131}' => 'I',
        c => c.to_ascii_uppercase(),
    })
}

/// Go's `strings.EqualFold` of a value with an ASCII `name` (actions, feature gates): ASCII
/// case, and the KELVIN SIGN and LATIN SMALL LETTER LONG S, whose simple case folding reaches
/// `K` and `S`. Unlike [`json_key_eq`] it does not take the dotted or dotless i for `I`.
pub fn equal_fold(value: &str, name: &str) -> bool {
    eq_folded(value, name, |c| match c {
        '\u{212A}' => 'K',
        '\u{017F}' => 'S',
        c => c.to_ascii_uppercase(),
    })
}

/// Whether `text` matches the ASCII `name` letter by letter once `fold` has mapped each of its
/// letters (the letters of `name` are only upper-cased).
fn eq_folded(text: &str, name: &str, fold: impl Fn(char) -> char) -> bool {
    let mut text = text.chars();
    let mut name = name.chars();
    loop {
        match (text.next(), name.next()) {
            (None, None) => return true,
            (Some(t), Some(n)) if fold(t) == n.to_ascii_uppercase() => {}
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
    fn values_fold_as_equal_fold_does() {
        assert!(equal_fold("packages", "Packages"));
        assert!(equal_fold("PACKAGES", "Packages"));
        assert!(equal_fold("\u{212A}ey", "Key"));
        assert!(equal_fold("\u{017F}ize", "Size"));
        assert!(!equal_fold("Package", "Packages"));
        assert!(!equal_fold("Packages", "Package"));
        assert!(!equal_fold("Pbckages", "Packages"));
        assert!(!equal_fold("S\u{0130}ze", "Size"));
        assert!(!equal_fold("S\u{0131}ze", "Size"));
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
