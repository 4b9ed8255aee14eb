//! Running one template on gotmpl without letting the engine see key material.
//!
//! The data model handed to gotmpl contains no secret bytes. Each part (`.Secrets.k.Private`)
//! is a one-entry map whose key is a marker naming the reference; each whole secret is the map
//! of its three parts. Encoders recognise these maps by identity, read the bytes from the
//! [`TemplateData`], encode them into a zeroing buffer and return a short result token instead
//! of the text. After execution the output is assembled: text is copied, tokens are replaced by
//! the encoded bytes (this is also what makes `raw` binary-safe), and any part marker left in
//! the output means secret material was written without an encoder.
//!
//! Consequences the checks below enforce, so that no template silently renders differently
//! from MarbleRun:
//! - every encoder result must reach the output; a result that is compared, sliced or
//!   reformatted is refused (`EncoderResultUsed`, `EncoderResultAltered`);
//! - `len` measures the real bytes; `index`, `html`, `js`, `urlquery` and `printf` verbs
//!   other than `%s`/`%v` refuse secret material, which they would otherwise see only as a
//!   reference; `index` of a missing secret is an unknown name, as a field lookup is;
//! - function names are checked before execution, as Go's parser does, so `raw` in `Env` is
//!   refused even in a branch that never runs.
//!
//! Templates that are not valid UTF-8 (binary `Data` decoded from base64) are run with each
//! invalid byte mapped to a private-use character and mapped back afterwards, so the text
//! around the actions is kept byte for byte.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use gotmpl::{MissingKey, Template, TemplateError, Value};

use super::data::{Part, Secret, SecretBytes, SecretType, TemplateData};
use super::encode::{self, Encoder, Section};
use super::error::RenderError;
use super::syntax;

/// Largest rendered value, in bytes.
pub const MAX_RENDERED_BYTES: usize = 16 * 1024 * 1024;

/// Most encoder calls one template may make.
pub const MAX_ENCODER_CALLS: usize = 10_000;

/// Most `range` iterations one template may run.
pub const MAX_RANGE_ITERATIONS: u64 = 100_000;

/// Opens and closes a part marker, whose text is the reference (`.Secrets.k.Cert`).
const PART_OPEN: char = '\u{F8F0}';
const PART_CLOSE: char = '\u{F8F1}';
/// Opens and closes an encoder result token, whose text is the result's decimal index.
const RESULT_OPEN: char = '\u{F8F2}';
const RESULT_CLOSE: char = '\u{F8F3}';

/// Invalid bytes `0x80..=0xFF` of a non-UTF-8 template are carried as `U+F780..=U+F7FF`.
const BYTE_BASE: u32 = 0xF700;
const MAPPED_BYTES: std::ops::RangeInclusive<char> = '\u{F780}'..='\u{F7FF}';

/// The template data as gotmpl sees it, and what its references stand for.
pub(crate) struct Prepared {
    root: Value,
    parts: HashMap<usize, PartRef>,
    secrets: HashMap<usize, SecretRef>,
    /// The maps of secrets (`.Secrets`, `.Previous.Secrets`, `.MarbleRun`), by identity.
    containers: HashMap<usize, &'static str>,
}

struct PartRef {
    reference: String,
    secret: Arc<Secret>,
    part: Part,
}

struct SecretRef {
    reference: String,
    secret: Arc<Secret>,
}

impl Prepared {
    pub(crate) fn new(data: &TemplateData) -> Self {
        let mut prepared = Self {
            root: Value::Nil,
            parts: HashMap::new(),
            secrets: HashMap::new(),
            containers: HashMap::new(),
        };
        let secrets = prepared.secret_map(".Secrets", &data.secrets);
        let previous = prepared.secret_map(".Previous.Secrets", &data.previous);
        let mut marblerun = BTreeMap::new();
        for (name, secret) in data.marblerun.entries() {
            let reference = format!(".MarbleRun.{name}");
            let value = prepared.secret_value(reference, Arc::new(secret.clone()));
            marblerun.insert(Arc::from(name), value);
        }
        let marblerun = Arc::new(marblerun);
        prepared
            .containers
            .insert(identity(&marblerun), ".MarbleRun");
        prepared.root = map([
            ("MarbleRun", Value::Map(marblerun)),
            ("Previous", map([("Secrets", previous)])),
            ("Secrets", secrets),
        ]);
        prepared
    }

    fn secret_map(
        &mut self,
        prefix: &'static str,
        secrets: &BTreeMap<String, Arc<Secret>>,
    ) -> Value {
        let entries = secrets
            .iter()
            .map(|(name, secret)| {
                let value = self.secret_value(format!("{prefix}.{name}"), Arc::clone(secret));
                (Arc::from(name.as_str()), value)
            })
            .collect();
        let entries = Arc::new(entries);
        self.containers.insert(identity(&entries), prefix);
        Value::Map(entries)
    }

    fn secret_value(&mut self, reference: String, secret: Arc<Secret>) -> Value {
        let mut parts = BTreeMap::new();
        for part in Part::ALL {
            let part_reference = format!("{reference}.{}", part.field());
            let marker = format!("{PART_OPEN}{part_reference}{PART_CLOSE}");
            let inner = Arc::new(BTreeMap::from([(Arc::from(marker), Value::Nil)]));
            self.parts.insert(
                identity(&inner),
                PartRef {
                    reference: part_reference,
                    secret: Arc::clone(&secret),
                    part,
                },
            );
            parts.insert(Arc::from(part.field()), Value::Map(inner));
        }
        let parts = Arc::new(parts);
        self.secrets
            .insert(identity(&parts), SecretRef { reference, secret });
        Value::Map(parts)
    }

    fn part(&self, value: &Value) -> Option<&PartRef> {
        match value {
            Value::Map(map) => self.parts.get(&identity(map)),
            _ => None,
        }
    }

    fn whole(&self, value: &Value) -> Option<&SecretRef> {
        match value {
            Value::Map(map) => self.secrets.get(&identity(map)),
            _ => None,
        }
    }

    /// Whether `value` is or contains a reference to secret material or an encoder result.
    fn carries_secret(&self, value: &Value) -> bool {
        match value {
            Value::String(text) => text.chars().any(is_marker),
            Value::Map(map) => {
                self.parts.contains_key(&identity(map))
                    || self.secrets.contains_key(&identity(map))
                    || map.values().any(|v| self.carries_secret(v))
            }
            Value::List(items) => items.iter().any(|v| self.carries_secret(v)),
            _ => false,
        }
    }
}

fn identity<T>(arc: &Arc<T>) -> usize {
    Arc::as_ptr(arc).cast::<()>() as usize
}

fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Map(Arc::new(
        entries
            .into_iter()
            .map(|(key, value)| (Arc::from(key), value))
            .collect(),
    ))
}

fn is_marker(c: char) -> bool {
    matches!(c, PART_OPEN | PART_CLOSE | RESULT_OPEN | RESULT_CLOSE)
}

/// The state of one execution, shared with the functions registered for it.
struct Session {
    prepared: Arc<Prepared>,
    state: Mutex<SessionState>,
}

#[derive(Default)]
struct SessionState {
    results: Vec<EncodedResult>,
    failure: Option<RenderError>,
    calls: usize,
    /// Bytes held by `results`.
    encoded_bytes: usize,
}

struct EncodedResult {
    encoder: Encoder,
    bytes: SecretBytes,
    used: bool,
}

impl Session {
    fn state(&self) -> std::sync::MutexGuard<'_, SessionState> {
        // A panic inside a function is caught by gotmpl and fails the render; the state it
        // leaves is still consistent enough to report, so poisoning is ignored.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `cause` and turns it into the engine's error type, so that the render reports
    /// the precise cause rather than gotmpl's rendering of it.
    fn fail(&self, cause: RenderError) -> TemplateError {
        let message = cause.to_string();
        self.state().failure = Some(cause);
        TemplateError::Exec(message)
    }

    fn encode(&self, encoder: Encoder, args: &[Value]) -> gotmpl::Result<Value> {
        match self.try_encode(encoder, args) {
            Ok(bytes) => {
                let mut state = self.state();
                state.calls += 1;
                state.encoded_bytes = state.encoded_bytes.saturating_add(bytes.len());
                // Every result must reach the output, so results beyond its limit can only
                // fail later; stop before holding them.
                let limit = if state.calls > MAX_ENCODER_CALLS {
                    Some(RenderError::TooManyEncoderCalls {
                        limit: MAX_ENCODER_CALLS,
                    })
                } else if state.encoded_bytes > MAX_RENDERED_BYTES {
                    Some(RenderError::OutputTooLarge {
                        limit: MAX_RENDERED_BYTES,
                    })
                } else {
                    None
                };
                if let Some(cause) = limit {
                    drop(state);
                    return Err(self.fail(cause));
                }
                let index = state.results.len();
                state.results.push(EncodedResult {
                    encoder,
                    bytes,
                    used: false,
                });
                Ok(Value::String(Arc::from(format!(
                    "{RESULT_OPEN}{index}{RESULT_CLOSE}"
                ))))
            }
            Err(cause) => Err(self.fail(cause)),
        }
    }

    fn try_encode(&self, encoder: Encoder, args: &[Value]) -> Result<SecretBytes, RenderError> {
        let [arg] = args else {
            return Err(RenderError::ArgumentCount {
                encoder,
                count: args.len(),
            });
        };
        let prepared = &self.prepared;
        let (reference, bytes, part) = if let Some(part) = prepared.part(arg) {
            (&part.reference, part.secret.part(part.part), Some(part))
        } else if let Some(whole) = prepared.whole(arg) {
            // A whole secret stands for its public part, as in MarbleRun.
            (&whole.reference, whole.secret.part(Part::Public), None)
        } else if matches!(arg, Value::Nil) {
            return Err(RenderError::MissingSecret { encoder });
        } else {
            return Err(RenderError::NotSecret {
                encoder,
                got: arg.type_name(),
            });
        };

        match (encoder, part) {
            (Encoder::Pem, None) => {
                return Err(RenderError::PemOfWholeSecret {
                    reference: reference.clone(),
                });
            }
            (Encoder::String, Some(_)) => {
                return Err(RenderError::StringNeedsPlain {
                    reference: reference.clone(),
                    what: "a part, not a whole secret".into(),
                });
            }
            (Encoder::String, None) => {
                let secret_type = prepared.whole(arg).and_then(|w| w.secret.secret_type());
                if secret_type != Some(SecretType::Plain) {
                    let what = secret_type.map_or("a Coordinator certificate".into(), |t| {
                        format!("a {t} secret")
                    });
                    return Err(RenderError::StringNeedsPlain {
                        reference: reference.clone(),
                        what,
                    });
                }
            }
            _ => {}
        }
        if bytes.is_empty() {
            return Err(RenderError::EmptyValue {
                reference: reference.clone(),
            });
        }

        Ok(match (encoder, part) {
            (Encoder::Pem, Some(part)) => encode::pem(part.part.pem_label(), bytes.as_bytes()),
            (Encoder::Hex, _) => encode::hex(bytes.as_bytes()),
            (Encoder::Base64, _) => encode::base64(bytes.as_bytes()),
            (Encoder::String, _) if bytes.as_bytes().contains(&0) => {
                return Err(RenderError::NulInString {
                    reference: reference.clone(),
                });
            }
            _ => bytes.clone(),
        })
    }

    /// `len`, measuring the real bytes of parts and encoder results.
    fn len(&self, args: &[Value]) -> gotmpl::Result<Value> {
        let [arg] = args else {
            return Err(TemplateError::ArgCount {
                name: "len".into(),
                expected: 1,
                got: args.len(),
            });
        };
        if let Some(part) = self.prepared.part(arg) {
            return Ok(Value::Int(len_value(part.secret.part(part.part).len())));
        }
        if self.prepared.whole(arg).is_some() {
            return Err(self.fail(RenderError::SecretPassedToFunction { function: "len" }));
        }
        match arg {
            Value::String(text) if text.chars().any(is_marker) => self.measure(text),
            other => other
                .len()
                .map(|n| Value::Int(len_value(n)))
                .ok_or_else(|| TemplateError::Exec(format!("len: cannot take length of {other}"))),
        }
    }

    /// The length a string holding encoder result tokens will have once written out; the
    /// results count as used.
    fn measure(&self, text: &str) -> gotmpl::Result<Value> {
        let mut state = self.state();
        let mut total = 0;
        for piece in pieces(text, false) {
            total += match piece {
                Ok(Piece::Text(text)) => text.len(),
                Ok(Piece::Byte(_)) => 1,
                Ok(Piece::Result(index)) => match state.results.get_mut(index) {
                    Some(result) => {
                        result.used = true;
                        result.bytes.len()
                    }
                    None => {
                        drop(state);
                        return Err(self.fail(RenderError::EncoderResultAltered));
                    }
                },
                Err(_) => {
                    drop(state);
                    return Err(self.fail(RenderError::SecretPassedToFunction { function: "len" }));
                }
            };
        }
        Ok(Value::Int(len_value(total)))
    }

    /// `index`: a missing secret is an unknown name (Go would yield nil and print
    /// `<no value>`), and a secret or part cannot be indexed (Go refuses structs; a part's
    /// bytes are not exposed to templates).
    fn index(&self, args: &[Value]) -> gotmpl::Result<Value> {
        let Some((first, keys)) = args.split_first().filter(|(_, keys)| !keys.is_empty()) else {
            return Err(TemplateError::ArgCount {
                name: "index".into(),
                expected: 2,
                got: args.len(),
            });
        };
        let prepared = &self.prepared;
        let mut value = first.clone();
        for key in keys {
            if prepared.part(&value).is_some() || prepared.whole(&value).is_some() {
                return Err(self.fail(RenderError::SecretPassedToFunction { function: "index" }));
            }
            let container = match &value {
                Value::Map(map) => prepared.containers.get(&identity(map)),
                _ => None,
            };
            let next = value.index(key)?;
            if let (Some(container), Value::String(name), Value::Nil) = (container, key, &next) {
                return Err(self.fail(RenderError::UnknownName {
                    name: format!("{container}.{name}"),
                }));
            }
            value = next;
        }
        Ok(value)
    }

    /// `html`, `js` and `urlquery`, refusing secret material.
    fn escape(
        &self,
        function: &'static str,
        escape: fn(&str) -> String,
        args: &[Value],
    ) -> gotmpl::Result<Value> {
        let [arg] = args else {
            return Err(TemplateError::ArgCount {
                name: function.into(),
                expected: 1,
                got: args.len(),
            });
        };
        if self.prepared.carries_secret(arg) {
            return Err(self.fail(RenderError::SecretPassedToFunction { function }));
        }
        // Go's evalArgs prints a missing value as `<no value>`.
        let text = match arg {
            Value::Nil => "<no value>".to_owned(),
            Value::String(text) => text.to_string(),
            other => other.to_string(),
        };
        Ok(Value::String(Arc::from(escape(&text))))
    }

    /// `printf`, allowing secret material only where it is written unchanged (`%s`, `%v`).
    fn printf(&self, args: &[Value]) -> gotmpl::Result<Value> {
        let carries = |value: &Value| self.prepared.carries_secret(value);
        if let Some((format, rest)) = args.split_first() {
            let plain_format = matches!(format, Value::String(f) if only_plain_verbs(f));
            if carries(format) || (!plain_format && rest.iter().any(carries)) {
                return Err(self.fail(RenderError::SecretPassedToFunction {
                    function: "printf (verbs other than %s and %v)",
                }));
            }
        }
        builtin_printf(args)
    }
}

fn len_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Whether every directive in a Go format string is `%s`, `%v` or `%%` without flags, width,
/// precision or argument index.
fn only_plain_verbs(format: &str) -> bool {
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c == '%' && !matches!(chars.next(), Some('s' | 'v' | '%')) {
            return false;
        }
    }
    true
}

/// Go's `printf`, run by a template of its own so that gotmpl's implementation is used
/// unchanged: `{{ printf (index . 0) (index . 1) ... }}` over the argument list.
fn builtin_printf(args: &[Value]) -> gotmpl::Result<Value> {
    let mut source = String::from("{{ printf");
    for index in 0..args.len() {
        let _ = write!(source, " (index . {index})");
    }
    source.push_str(" }}");
    let text = Template::new("printf")
        .parse(&source)?
        .execute_to_string(&Value::List(Arc::from(args)))?;
    Ok(Value::String(Arc::from(text)))
}

/// One stretch of the engine's output.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Byte(u8),
    Result(usize),
}

/// What an output stretch that is not text, a byte or a result token is.
#[derive(Debug, PartialEq, Eq)]
enum Stray {
    /// A part marker: secret material written without an encoder.
    Part(String),
    /// A broken result token or a lone marker.
    Broken,
}

/// Splits engine output into text, mapped bytes (if `mapped`) and result tokens.
fn pieces(output: &str, mapped: bool) -> impl Iterator<Item = Result<Piece<'_>, Stray>> {
    let mut rest = output;
    std::iter::from_fn(move || {
        let first = rest.chars().next()?;
        let special = |c: char| is_marker(c) || (mapped && MAPPED_BYTES.contains(&c));
        if !special(first) {
            let end = rest.find(special).unwrap_or(rest.len());
            let (text, tail) = rest.split_at(end);
            rest = tail;
            return Some(Ok(Piece::Text(text)));
        }
        let after = &rest[first.len_utf8()..];
        let (piece, tail) = match first {
            PART_OPEN => match after.split_once(PART_CLOSE) {
                Some((reference, tail)) => (Err(Stray::Part(reference.to_owned())), tail),
                None => (Err(Stray::Part(String::new())), ""),
            },
            RESULT_OPEN => match after.split_once(RESULT_CLOSE) {
                Some((digits, tail)) => match digits.parse::<usize>() {
                    Ok(index) if digits.bytes().all(|b| b.is_ascii_digit()) => {
                        (Ok(Piece::Result(index)), tail)
                    }
                    _ => (Err(Stray::Broken), tail),
                },
                None => (Err(Stray::Broken), ""),
            },
            PART_CLOSE | RESULT_CLOSE => (Err(Stray::Broken), after),
            // A mapped byte: U+F780..=U+F7FF carries 0x80..=0xFF.
            mapped_byte => {
                let byte = u8::try_from(u32::from(mapped_byte) - BYTE_BASE).unwrap_or(0);
                (Ok(Piece::Byte(byte)), after)
            }
        };
        rest = tail;
        Some(piece)
    })
}

/// A `fmt::Write` that refuses to grow beyond [`MAX_RENDERED_BYTES`].
struct LimitedOutput {
    text: String,
    overflowed: bool,
}

impl std::fmt::Write for LimitedOutput {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.text.len() + s.len() > MAX_RENDERED_BYTES {
            self.overflowed = true;
            return Err(std::fmt::Error);
        }
        self.text.push_str(s);
        Ok(())
    }
}

/// Runs one template in `section` over `prepared`.
pub(crate) fn render(
    prepared: &Arc<Prepared>,
    source: &[u8],
    section: Section,
) -> Result<SecretBytes, RenderError> {
    // Text without actions renders as itself; binary data often has no `{{` at all.
    if !source.windows(2).any(|w| w == b"{{") {
        return Ok(SecretBytes::from_slice(source));
    }

    let (text, mapped) = template_text(source)?;
    syntax::check_blocks(&text)?;
    syntax::check_functions(&text, section)?;
    let session = Arc::new(Session {
        prepared: Arc::clone(prepared),
        state: Mutex::default(),
    });
    let template = build_template(&session, section)
        .parse(&text)
        .map_err(syntax::syntax_error)?;

    let mut output = LimitedOutput {
        text: String::new(),
        overflowed: false,
    };
    let executed = template.execute_fmt(&mut output, &prepared.root);
    drop(template);
    let mut state = session.state();
    if let Err(error) = executed {
        return Err(execution_error(
            error,
            &mut state,
            output.overflowed,
            section,
        ));
    }
    assemble(&output.text, mapped, &mut state.results, section)
}

/// The template source as text: UTF-8 as is, otherwise with invalid bytes mapped.
fn template_text(source: &[u8]) -> Result<(String, bool), RenderError> {
    let needs_mapping = std::str::from_utf8(source).is_err();
    // Mapped characters are only ambiguous in a template that needs the mapping.
    let reserved = |c: &char| is_marker(*c) || (needs_mapping && MAPPED_BYTES.contains(c));
    let mut text = String::with_capacity(source.len());
    let mut mapped = false;
    for chunk in source.utf8_chunks() {
        if let Some(c) = chunk.valid().chars().find(reserved) {
            return Err(RenderError::ReservedCharacter {
                codepoint: u32::from(c),
            });
        }
        text.push_str(chunk.valid());
        for &byte in chunk.invalid() {
            mapped = true;
            // Invalid UTF-8 bytes are always 0x80..=0xFF, which map into U+F780..=U+F7FF.
            text.push(char::from_u32(BYTE_BASE + u32::from(byte)).unwrap_or('\u{FFFD}'));
        }
    }
    Ok((text, mapped))
}

fn build_template(session: &Arc<Session>, section: Section) -> Template {
    let mut template = Template::new("data")
        .missing_key(MissingKey::Error)
        .max_range_iters(MAX_RANGE_ITERATIONS);
    for encoder in Encoder::ALL.into_iter().filter(|e| section.allows(*e)) {
        let session = Arc::clone(session);
        template = template.func(encoder.name(), move |args| session.encode(encoder, args));
    }
    type Escaper = fn(&str) -> String;
    let escapers: [(&'static str, Escaper); 3] = [
        ("html", gotmpl::html_escape),
        ("js", gotmpl::js_escape),
        ("urlquery", gotmpl::url_encode),
    ];
    for (name, escape) in escapers {
        let session = Arc::clone(session);
        template = template.func(name, move |args| session.escape(name, escape, args));
    }
    let index_session = Arc::clone(session);
    let len_session = Arc::clone(session);
    let printf_session = Arc::clone(session);
    template
        .func("index", move |args| index_session.index(args))
        .func("len", move |args| len_session.len(args))
        .func("printf", move |args| printf_session.printf(args))
}

fn execution_error(
    error: TemplateError,
    state: &mut SessionState,
    overflowed: bool,
    section: Section,
) -> RenderError {
    if let Some(failure) = state.failure.take() {
        return failure;
    }
    match error {
        TemplateError::MissingKey { key } => RenderError::UnknownName { name: key },
        TemplateError::UndefinedFunction(name) => unknown_function(name, section),
        TemplateError::Write | TemplateError::Io(_) if overflowed => RenderError::OutputTooLarge {
            limit: MAX_RENDERED_BYTES,
        },
        TemplateError::Parse { .. } | TemplateError::Lex { .. } => syntax::syntax_error(error),
        other => RenderError::Execution {
            message: other.to_string(),
        },
    }
}

pub(crate) fn unknown_function(name: String, section: Section) -> RenderError {
    match Encoder::from_name(&name) {
        Some(encoder) => RenderError::EncoderNotAllowed { encoder, section },
        None => RenderError::UnknownFunction { name },
    }
}

/// Puts the output together: text as is, mapped bytes back as bytes, result tokens replaced
/// by the encoded bytes. The buffer is allocated at its final size so that no partial copy of
/// key material is left behind.
fn assemble(
    output: &str,
    mapped: bool,
    results: &mut [EncodedResult],
    section: Section,
) -> Result<SecretBytes, RenderError> {
    let mut total = 0usize;
    for piece in pieces(output, mapped) {
        total += match piece {
            Ok(Piece::Text(text)) => text.len(),
            Ok(Piece::Byte(_)) => 1,
            Ok(Piece::Result(index)) => match results.get_mut(index) {
                Some(result) => {
                    result.used = true;
                    result.bytes.len()
                }
                None => return Err(RenderError::EncoderResultAltered),
            },
            Err(Stray::Part(reference)) => {
                return Err(RenderError::BareReference { reference, section });
            }
            Err(Stray::Broken) => return Err(RenderError::EncoderResultAltered),
        };
    }
    if let Some(unused) = results.iter().find(|r| !r.used) {
        return Err(RenderError::EncoderResultUsed {
            encoder: unused.encoder,
        });
    }
    if total > MAX_RENDERED_BYTES {
        return Err(RenderError::OutputTooLarge {
            limit: MAX_RENDERED_BYTES,
        });
    }

    let mut bytes = Vec::with_capacity(total);
    for piece in pieces(output, mapped).flatten() {
        match piece {
            Piece::Text(text) => bytes.extend_from_slice(text.as_bytes()),
            Piece::Byte(byte) => bytes.push(byte),
            Piece::Result(index) => {
                if let Some(result) = results.get(index) {
                    bytes.extend_from_slice(result.bytes.as_bytes());
                }
            }
        }
    }
    Ok(SecretBytes::new(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_split_text_tokens_and_markers() {
        let output =
            format!("a{RESULT_OPEN}12{RESULT_CLOSE}b{PART_OPEN}.Secrets.k.Cert{PART_CLOSE}");
        let got: Vec<_> = pieces(&output, false).collect();
        assert_eq!(
            got,
            [
                Ok(Piece::Text("a")),
                Ok(Piece::Result(12)),
                Ok(Piece::Text("b")),
                Err(Stray::Part(".Secrets.k.Cert".into())),
            ]
        );
    }

    #[test]
    fn broken_tokens_are_reported() {
        for output in [
            format!("{RESULT_OPEN}1"),
            format!("{RESULT_OPEN}+1{RESULT_CLOSE}"),
            format!("x{RESULT_CLOSE}"),
        ] {
            assert!(
                pieces(&output, false).any(|p| p == Err(Stray::Broken)),
                "{output:?}"
            );
        }
    }

    #[test]
    fn mapped_bytes_only_count_in_mapped_templates() {
        let output = "\u{F7FF}";
        assert_eq!(
            pieces(output, true).collect::<Vec<_>>(),
            [Ok(Piece::Byte(0xFF))]
        );
        assert_eq!(
            pieces(output, false).collect::<Vec<_>>(),
            [Ok(Piece::Text(output))]
        );
    }

    #[test]
    fn plain_verbs_are_recognised() {
        assert!(only_plain_verbs("KEY=%s, %v, 100%%"));
        assert!(!only_plain_verbs("%q"));
        assert!(!only_plain_verbs("%10s"));
        assert!(!only_plain_verbs("%"));
    }

    #[test]
    fn builtin_printf_is_gos() {
        let args = [Value::from("%q-%d"), Value::from("a\nb"), Value::Int(7)];
        assert_eq!(builtin_printf(&args).unwrap(), Value::from("\"a\\nb\"-7"));
    }
}
