//! Go's `encoding/base64.StdEncoding` as Go's JSON decoder applies it to `[]byte` fields:
//! MarbleRun's clients and manifests are written against it, so every Quarry decoder of those
//! inputs accepts exactly what it accepts: padding required, line breaks (`\r`, `\n`) skipped
//! anywhere, non-zero trailing bits tolerated. Also how that decoder matches object keys to
//! member names ([`json_key_eq`]), Go's `strings.EqualFold` ([`equal_fold`]), and the PEM
//! block that Go's `encoding/pem.Decode` finds in a text ([`pem_decode`]).

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

/// A PEM block as Go's `encoding/pem.Decode` returns it.
#[derive(Clone, PartialEq, Eq)]
pub struct PemBlock {
    /// The type after `-----BEGIN ` (for example `CERTIFICATE`).
    pub label: String,
    /// The RFC 1421 headers (`Proc-Type: ...`) in order, keys and values trimmed.
    pub headers: Vec<(String, String)>,
    /// The decoded contents.
    pub contents: Vec<u8>,
}

impl std::fmt::Debug for PemBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The contents may be a private key.
        f.debug_struct("PemBlock")
            .field("label", &self.label)
            .field("headers", &self.headers.len())
            .field("contents", &format_args!("{} bytes", self.contents.len()))
            .finish()
    }
}

/// The first PEM block in `text` that Go's `pem.Decode` accepts, so that every manifest value
/// MarbleRun reads as PEM (users' certificates, recovery keys) is read the same here:
///
/// - text before the block is skipped; `-----BEGIN ` must start a line;
/// - header lines (`key: value`) follow the BEGIN line until the first line without a colon,
///   which is already part of the body, so a blank line may stand anywhere in the body;
/// - spaces and tabs in the body are removed, line breaks are skipped by the base64 decoder
///   ([`decode_std_base64`]);
/// - the END line must name the same type, and nothing but spaces and tabs may follow it on
///   its line, and one `\r` just before the line break;
/// - a candidate that fails any of this is passed over and the search goes on after its
///   headers.
///
/// Lines end as Go's reader ends them: at `\n`, without one `\r` just before it and without
/// trailing spaces and tabs (a `\r` elsewhere stays part of the line).
///
/// The time is linear in the length of `text`, however many candidates fail: candidates that
/// share an END line share one search for it and one look at the rest of its line, and a body
/// is only decoded if it holds nothing but base64 letters and blanks, which no later BEGIN line
/// does, so the bodies decoded do not overlap.
pub fn pem_decode(text: &[u8]) -> Option<PemBlock> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    const END: &[u8] = b"-----END ";
    const DASHES: &[u8] = b"-----";
    let mut end_lines = NextMatch::new(|at| find(&text[at..], b"\n-----END ").map(|i| at + i));
    let mut bad_bytes = NextMatch::new(|at| {
        text[at..]
            .iter()
            .position(|&b| !is_base64_or_blank(b))
            .map(|i| at + i)
    });
    let mut end_line_tail: Option<EndLineTail> = None;
    // `pos` is where the unread rest of `text` starts.
    let mut pos = 0;
    loop {
        // The next BEGIN at the start of a line.
        let at = if text[pos..].starts_with(BEGIN) {
            pos
        } else {
            pos + find(&text[pos..], b"\n-----BEGIN ")? + 1
        };
        pos = at + BEGIN.len();
        let (type_line, next) = go_line(text, pos);
        pos = next;
        let Some(label) = type_line.strip_suffix(DASHES) else {
            continue;
        };
        let mut headers = Vec::new();
        loop {
            if pos == text.len() {
                return None;
            }
            let (line, next) = go_line(text, pos);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                break;
            };
            headers.push((
                String::from_utf8_lossy(line[..colon].trim_ascii()).into_owned(),
                String::from_utf8_lossy(line[colon + 1..].trim_ascii()).into_owned(),
            ));
            pos = next;
        }
        // The body runs from `pos` to `body_end`; the END line's type starts at `trailer`.
        // Without headers the END line may follow at once; otherwise it starts a line.
        let (body_end, trailer) = if headers.is_empty() && text[pos..].starts_with(END) {
            (pos, pos + END.len())
        } else {
            match end_lines.at_or_after(pos) {
                Some(i) => (i, i + 1 + END.len()),
                None => continue,
            }
        };
        if !text[trailer..].starts_with(label) || !text[trailer + label.len()..].starts_with(DASHES)
        {
            continue;
        }
        let tail = match end_line_tail {
            Some(tail) if tail.from == trailer => tail,
            _ => *end_line_tail.insert(EndLineTail::new(text, trailer)),
        };
        if !tail.blank_from(trailer + label.len() + DASHES.len()) {
            continue;
        }
        if bad_bytes.at_or_after(pos).is_some_and(|bad| bad < body_end) {
            continue;
        }
        let body: Vec<u8> = text[pos..body_end]
            .iter()
            .copied()
            .filter(|b| !matches!(b, b' ' | b'\t'))
            .collect();
        let Some(contents) = std::str::from_utf8(&body)
            .ok()
            .and_then(|b| decode_std_base64(b).ok())
        else {
            continue;
        };
        return Some(PemBlock {
            label: String::from_utf8_lossy(label).into_owned(),
            headers,
            contents,
        });
    }
}

/// A byte that may stand in a PEM body: a letter of standard base64, its padding, a space, a
/// tab or a line break.
fn is_base64_or_blank(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b' ' | b'\t' | b'\r' | b'\n')
}

/// The first position at or after a given one where something is found, for positions asked
/// in increasing order: the last answer is reused while it still lies ahead, so that all the
/// searches together read the text about once.
struct NextMatch<F> {
    search: F,
    /// The last search: where it started and what it found.
    last: Option<(usize, Option<usize>)>,
}

impl<F: FnMut(usize) -> Option<usize>> NextMatch<F> {
    fn new(search: F) -> Self {
        Self { search, last: None }
    }

    fn at_or_after(&mut self, at: usize) -> Option<usize> {
        match self.last {
            Some((from, None)) if from <= at => None,
            Some((from, Some(found))) if from <= at && at <= found => Some(found),
            _ => {
                let found = (self.search)(at);
                self.last = Some((at, found));
                found
            }
        }
    }
}

/// The line an END line's type starts, from that start (`from`) to its end as Go's reader
/// ends it, and the last byte in it that is neither a space nor a tab.
#[derive(Clone, Copy)]
struct EndLineTail {
    from: usize,
    /// Where the line's `\n` is (the text's length if none).
    newline: usize,
    /// The last byte before `newline`, without a `\r` just before it, that is not blank.
    last_non_blank: Option<usize>,
}

impl EndLineTail {
    fn new(text: &[u8], from: usize) -> Self {
        let newline = text[from..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(text.len(), |i| from + i);
        let mut end = newline;
        if newline < text.len() && newline > from && text[newline - 1] == b'\r' {
            end -= 1;
        }
        let last_non_blank = text[from..end]
            .iter()
            .rposition(|b| !matches!(b, b' ' | b'\t'))
            .map(|i| from + i);
        Self {
            from,
            newline,
            last_non_blank,
        }
    }

    /// Whether the line holds nothing but blanks from `at` (which is at least `from`) on, as
    /// Go's reader sees the line that starts at `at`.
    fn blank_from(&self, at: usize) -> bool {
        // A `\r` just before the line break is dropped only if the line from `at` is not empty.
        at == self.newline || self.last_non_blank.is_none_or(|last| last < at)
    }
}

/// The line of `text` that starts at `at`, as Go's PEM reader takes it: up to the next `\n`,
/// without one `\r` just before that `\n`, and without trailing spaces and tabs; and where the
/// next line starts.
fn go_line(text: &[u8], at: usize) -> (&[u8], usize) {
    let data = &text[at..];
    let (line, next) = match data.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && data[i - 1] == b'\r' => (&data[..i - 1], at + i + 1),
        Some(i) => (&data[..i], at + i + 1),
        None => (data, text.len()),
    };
    let trimmed = line
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(&line[..0], |last| &line[..=last]);
    (trimmed, next)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
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

    const CERT_BODY: &str = "AAEC\nAwQF";

    fn block(text: &str) -> Option<(String, Vec<u8>)> {
        pem_decode(text.as_bytes()).map(|b| (b.label, b.contents))
    }

    #[test]
    fn pem_blocks_are_found_as_go_finds_them() {
        let plain = format!("-----BEGIN X-----\n{CERT_BODY}\n-----END X-----\n");
        let expected = Some(("X".to_owned(), vec![0, 1, 2, 3, 4, 5]));
        assert_eq!(block(&plain), expected);
        // Text before, CRLF, trailing blanks, indentation, blank lines inside the body.
        for text in [
            format!("some text\n{plain}more"),
            plain.replace('\n', "\r\n"),
            plain.replace("-----\n", "-----  \t\n"),
            "-----BEGIN X-----\n  AAEC\n\tAwQF\n-----END X-----".to_owned(),
            "-----BEGIN X-----\nAAEC\n\nAwQF\n-----END X-----\n".to_owned(),
            "-----BEGIN X-----\n\nAAEC\n\n\nAwQF\n\n-----END X-----\n".to_owned(),
            "-----BEGIN X-----\nAA EC Aw QF\n-----END X-----\n".to_owned(),
        ] {
            assert_eq!(block(&text), expected, "{text:?}");
        }
        // Headers, with and without the blank line after them.
        let with_headers = format!(
            "-----BEGIN X-----\nProc-Type: 4,ENCRYPTED\n DEK-Info : a:b \n\n{CERT_BODY}\n-----END X-----\n"
        );
        let parsed = pem_decode(with_headers.as_bytes()).unwrap();
        assert_eq!(
            parsed.headers,
            vec![
                ("Proc-Type".to_owned(), "4,ENCRYPTED".to_owned()),
                ("DEK-Info".to_owned(), "a:b".to_owned())
            ]
        );
        assert_eq!(parsed.contents, vec![0, 1, 2, 3, 4, 5]);
        let unseparated = with_headers.replace("\n\n", "\n");
        assert_eq!(block(&unseparated), expected);
        // An empty block.
        assert_eq!(
            block("-----BEGIN X-----\n-----END X-----\n"),
            Some(("X".to_owned(), Vec::new()))
        );
    }

    #[test]
    fn pem_candidates_go_refuses_are_passed_over() {
        let good = format!("-----BEGIN GOOD-----\n{CERT_BODY}\n-----END GOOD-----\n");
        for bad in [
            // Other type at the end, text after the END line, bad base64, no END line,
            // BEGIN not at the start of a line, type line without its dashes.
            format!("-----BEGIN X-----\n{CERT_BODY}\n-----END Y-----\n"),
            format!("-----BEGIN X-----\n{CERT_BODY}\n-----END X----- trailing\n"),
            "-----BEGIN X-----\nA*EC\n-----END X-----\n".to_owned(),
            "-----BEGIN X-----\nAQ\n-----END X-----\n".to_owned(),
            format!("-----BEGIN X-----\n{CERT_BODY}\n"),
            format!("x -----BEGIN X-----\n{CERT_BODY}\n-----END X-----\n"),
            format!("-----BEGIN X\n{CERT_BODY}\n-----END X-----\n"),
        ] {
            assert_eq!(block(&bad), None, "{bad:?}");
            let then_good = format!("{bad}{good}");
            assert_eq!(
                block(&then_good).map(|(label, _)| label).as_deref(),
                Some("GOOD"),
                "{then_good:?}"
            );
        }
        assert_eq!(block(""), None);
        assert_eq!(block("-----BEGIN X-----"), None);
        // Debug shows no contents.
        let parsed = pem_decode(good.as_bytes()).unwrap();
        assert!(!format!("{parsed:?}").contains("[0, 1"), "{parsed:?}");
    }

    #[test]
    fn pem_lines_end_as_go_ends_them() {
        // One `\r` just before the line break is dropped, then trailing spaces and tabs; a
        // `\r` anywhere else stays part of the line.
        let expected = Some(("X".to_owned(), vec![0, 1, 2, 3, 4, 5]));
        for good in [
            format!("-----BEGIN X----- \t\r\n{CERT_BODY}\r\n-----END X-----\t \r\n"),
            format!("-----BEGIN X-----\r\n{CERT_BODY}\r\n-----END X-----\r\nmore"),
            format!("-----BEGIN X-----\n{CERT_BODY}\n-----END X-----  "),
        ] {
            assert_eq!(block(&good), expected, "{good:?}");
        }
        for bad in [
            // A `\r` ending the text, or followed by a blank or another `\r`.
            format!("-----BEGIN X-----\n{CERT_BODY}\n-----END X-----\r"),
            format!("-----BEGIN X-----\n{CERT_BODY}\n-----END X-----\r \n"),
            format!("-----BEGIN X-----\n{CERT_BODY}\n-----END X-----\r\r\n"),
            format!("-----BEGIN X-----\r \n{CERT_BODY}\n-----END X-----\n"),
            format!("-----BEGIN X-----\r\r\n{CERT_BODY}\n-----END X-----\n"),
        ] {
            assert_eq!(block(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pem_candidates_that_fail_late_are_all_passed_over() {
        // Texts where every BEGIN line is a candidate that fails late. A reader that searches
        // the rest of the text for each is quadratic on them; the cost is measured against an
        // ordinary block by `cargo bench -p quarry-common --bench pem`. Here: the answers.
        const SIZE: usize = 64 * 1024;
        let begin = "-----BEGIN X-----\n";
        let begins = begin.repeat(SIZE / begin.len());
        let with_header = "-----BEGIN X-----\na: b\n".repeat(SIZE / 22);
        for input in [
            begins.clone(),
            with_header.clone(),
            format!("{begins}-----END X-----{}x\n", " ".repeat(SIZE)),
            format!("{begins}-----END Y-----\n"),
            format!(
                "{}-----END X-----\n",
                "-----BEGIN X-----\n*\n".repeat(SIZE / 20)
            ),
        ] {
            assert_eq!(block(&input), None, "{} bytes", input.len());
        }
        // With headers the END line must start a line of its own after them: the last
        // candidate's body is the blank line before it.
        assert_eq!(
            block(&format!("{with_header}\n-----END X-----\n")),
            Some(("X".to_owned(), Vec::new()))
        );
        // The last candidate of such a text is still found.
        assert_eq!(
            block(&format!("{begins}-----END X-----\n")),
            Some(("X".to_owned(), Vec::new()))
        );
    }
}
