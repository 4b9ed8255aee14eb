//! Table tests of the encoders on every secret type in `Files` and `Env`, the bad inputs the
//! dry run must refuse, and a property test that no template text makes rendering panic.
//!
//! Expected outputs are computed with independent implementations (the `hex`, `base64` and
//! `pem` crates, x509-parser) over real keys and certificates made with rcgen.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use rcgen::{CertificateParams, KeyPair, PublicKeyData as _};

use super::*;

/// A secret of the test data, with the bytes each part should have.
struct Fixture {
    name: &'static str,
    secret_type: SecretType,
    cert: Vec<u8>,
    public: Vec<u8>,
    private: Vec<u8>,
}

impl Fixture {
    fn part(&self, part: Part) -> &[u8] {
        match part {
            Part::Cert => &self.cert,
            Part::Public => &self.public,
            Part::Private => &self.private,
        }
    }

    fn secret(&self) -> Secret {
        let bytes = |b: &[u8]| SecretBytes::from_slice(b);
        match self.secret_type {
            SecretType::SymmetricKey => Secret::symmetric_key(bytes(&self.private)),
            SecretType::Plain => Secret::plain(bytes(&self.private)),
            ty => Secret::certificate(
                ty,
                bytes(&self.cert),
                bytes(&self.public),
                bytes(&self.private),
            )
            .expect("certificate type"),
        }
    }
}

fn key_fixture(
    name: &'static str,
    secret_type: SecretType,
    alg: &'static rcgen::SignatureAlgorithm,
) -> Fixture {
    let key = KeyPair::generate_for(alg).expect("key generation");
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("self-signed certificate");
    Fixture {
        name,
        secret_type,
        cert: cert.der().to_vec(),
        public: key.subject_public_key_info(),
        private: key.serialize_der(),
    }
}

fn same_bytes(name: &'static str, secret_type: SecretType, bytes: Vec<u8>) -> Fixture {
    Fixture {
        name,
        secret_type,
        cert: Vec::new(),
        public: bytes.clone(),
        private: bytes,
    }
}

fn fixtures() -> &'static [Fixture] {
    static FIXTURES: OnceLock<Vec<Fixture>> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        vec![
            // Every byte value, so `raw` must be binary-safe.
            same_bytes("sym", SecretType::SymmetricKey, (0..=255).collect()),
            same_bytes("plain", SecretType::Plain, b"s3cr3t value".to_vec()),
            same_bytes("plainnul", SecretType::Plain, vec![b'a', 0, b'b']),
            same_bytes("plainlatin", SecretType::Plain, vec![b'a', 0xe9]),
            key_fixture("rsa", SecretType::CertRsa, &rcgen::PKCS_RSA_SHA256),
            key_fixture(
                "ecdsa",
                SecretType::CertEcdsa,
                &rcgen::PKCS_ECDSA_P256_SHA256,
            ),
            key_fixture("ed", SecretType::CertEd25519, &rcgen::PKCS_ED25519),
        ]
    })
}

fn marble_fixture() -> &'static Fixture {
    static MARBLE: OnceLock<Fixture> = OnceLock::new();
    MARBLE.get_or_init(|| {
        key_fixture(
            "marble",
            SecretType::CertEcdsa,
            &rcgen::PKCS_ECDSA_P384_SHA384,
        )
    })
}

fn data() -> &'static TemplateData {
    static DATA: OnceLock<TemplateData> = OnceLock::new();
    DATA.get_or_init(|| {
        let marble = marble_fixture();
        let cert = |tag: u8| SecretBytes::new([&[tag][..], &marble.cert].concat());
        let mut data = TemplateData::new(MarbleRunSecrets {
            root_ca: Secret::reserved_certificate(cert(1)),
            marble_cert: Secret::reserved(
                SecretBytes::from_slice(&marble.cert),
                SecretBytes::from_slice(&marble.public),
                SecretBytes::from_slice(&marble.private),
            ),
            coordinator_root: Secret::reserved_certificate(cert(2)),
            coordinator_intermediate: Secret::reserved_certificate(cert(3)),
        });
        for fixture in fixtures() {
            data.set_secret(fixture.name, fixture.secret());
        }
        data.set_secret(
            "dash-key",
            Secret::symmetric_key(SecretBytes::from_slice(b"dash")),
        );
        data.set_previous(
            "sym",
            Secret::symmetric_key(SecretBytes::from_slice(b"old")),
        );
        data
    })
}

fn renderer() -> Renderer {
    Renderer::new(data())
}

fn render(section: Section, template: &str) -> Result<Vec<u8>, RenderError> {
    render_bytes(section, template.as_bytes())
}

fn render_bytes(section: Section, template: &[u8]) -> Result<Vec<u8>, RenderError> {
    let value = ParameterValue {
        data: template.to_vec(),
        no_templates: false,
    };
    match section {
        Section::Files => renderer()
            .render_file(&value)
            .map(|b| b.as_bytes().to_vec()),
        Section::Env => renderer()
            .render_env(&value)
            .map(|s| s.as_str().as_bytes().to_vec()),
    }
}

fn go_pem(label: &str, der: &[u8]) -> Vec<u8> {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der.to_vec()), config).into_bytes()
}

/// What MarbleRun's encoder table (reference §4.3) says `encoder` yields for `fixture`
/// (`part` `None` meaning the whole secret) in `section`.
fn expected(
    fixture: &Fixture,
    part: Option<Part>,
    encoder: Encoder,
    section: Section,
) -> Result<Vec<u8>, &'static str> {
    if !section.allows(encoder) {
        return Err("not allowed");
    }
    let bytes = match (part, encoder) {
        (None, Encoder::Pem) => return Err("pem of whole secret"),
        (Some(_), Encoder::String) => return Err("string needs plain"),
        (None, Encoder::String) if fixture.secret_type != SecretType::Plain => {
            return Err("string needs plain");
        }
        (None, _) => &fixture.public,
        (Some(part), _) => fixture.part(part),
    };
    if bytes.is_empty() {
        return Err("empty");
    }
    let out = match (encoder, part) {
        (Encoder::Pem, Some(part)) => go_pem(part.pem_label(), bytes),
        (Encoder::Hex, _) => hex::encode(bytes).into_bytes(),
        (Encoder::Base64, _) => STANDARD.encode(bytes).into_bytes(),
        (Encoder::String, _) if bytes.contains(&0) => return Err("nul in string"),
        _ => bytes.to_vec(),
    };
    if section == Section::Env && std::str::from_utf8(&out).is_err() {
        return Err("env not utf-8");
    }
    Ok(out)
}

fn kind(error: &RenderError) -> &'static str {
    match error {
        RenderError::EncoderNotAllowed { .. } => "not allowed",
        RenderError::PemOfWholeSecret { .. } => "pem of whole secret",
        RenderError::StringNeedsPlain { .. } => "string needs plain",
        RenderError::EmptyValue { .. } => "empty",
        RenderError::NulInString { .. } => "nul in string",
        RenderError::EnvNotUtf8 { .. } => "env not utf-8",
        _ => "other",
    }
}

#[test]
fn every_encoder_on_every_secret_type_in_files_and_env() {
    let mut cases = 0;
    for fixture in fixtures() {
        for section in [Section::Files, Section::Env] {
            for encoder in Encoder::ALL {
                let parts = [
                    None,
                    Some(Part::Cert),
                    Some(Part::Public),
                    Some(Part::Private),
                ];
                for part in parts {
                    let reference = match part {
                        None => format!(".Secrets.{}", fixture.name),
                        Some(part) => format!(".Secrets.{}.{}", fixture.name, part.field()),
                    };
                    let template = format!("<{{{{ {encoder} {reference} }}}}>");
                    let got = render(section, &template);
                    let want = expected(fixture, part, encoder, section)
                        .map(|out| [&b"<"[..], &out, b">"].concat());
                    match (&got, &want) {
                        (Ok(got), Ok(want)) => {
                            assert!(got == want, "{section} {template}: output differs")
                        }
                        (Err(error), Err(want)) => {
                            assert_eq!(kind(error), *want, "{section} {template}: {error}")
                        }
                        _ => panic!("{section} {template}: got {got:?}, want {want:?}"),
                    }
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 7 * 2 * 5 * 4);
}

#[test]
fn pem_output_is_what_go_writes_and_parses_back() {
    for fixture in fixtures().iter().filter(|f| f.secret_type.is_certificate()) {
        for part in Part::ALL {
            let out = render(
                Section::Files,
                &format!("{{{{ pem .Secrets.{}.{} }}}}", fixture.name, part.field()),
            )
            .unwrap();
            assert!(!out.contains(&b'\r'), "LF line endings only");
            let block = pem::parse(&out).unwrap();
            assert_eq!(block.tag(), part.pem_label());
            assert_eq!(block.contents(), fixture.part(part));
        }
        let cert = render(
            Section::Env,
            &format!("{{{{ pem .Secrets.{}.Cert }}}}", fixture.name),
        )
        .unwrap();
        let (_, parsed) = x509_parser::pem::parse_x509_pem(&cert).unwrap();
        assert!(
            parsed.parse_x509().is_ok(),
            "{} certificate parses",
            fixture.name
        );
    }
}

#[test]
fn raw_writes_binary_bytes_exactly() {
    let out = render(Section::Files, "head\n{{ raw .Secrets.sym }}\ntail").unwrap();
    let want: Vec<u8> = [&b"head\n"[..], &(0..=255).collect::<Vec<u8>>(), b"\ntail"].concat();
    assert_eq!(out, want);

    // MarbleRun's integration manifest concatenates a key and the Marble's private key.
    let out = render(
        Section::Files,
        "{{ raw .Secrets.sym }}{{ raw .MarbleRun.MarbleCert.Private }}",
    )
    .unwrap();
    let want = [
        &(0..=255).collect::<Vec<u8>>()[..],
        &marble_fixture().private,
    ]
    .concat();
    assert_eq!(out, want);
}

#[test]
fn binary_template_text_is_kept_byte_for_byte() {
    let template = [
        &[0xff, 0x00, 0xfe][..],
        b"{{ hex .Secrets.dash-key }}",
        &[0x80],
    ]
    .concat();
    assert!(matches!(
        render_bytes(Section::Files, &template),
        Err(RenderError::Syntax { .. })
    ));

    let template = [
        &[0xff, 0x00, 0xfe][..],
        b"{{ hex (index .Secrets \"dash-key\") }}",
        &[0x80, 0xf7],
    ]
    .concat();
    let want = [&[0xff, 0x00, 0xfe][..], b"64617368", &[0x80, 0xf7]].concat();
    assert_eq!(render_bytes(Section::Files, &template).unwrap(), want);

    // Without actions, data is not touched at all, whatever it contains.
    let data: Vec<u8> = (0..=255).rev().collect();
    assert_eq!(render_bytes(Section::Files, &data).unwrap(), data);
}

#[test]
fn no_templates_passes_braces_through_in_files_and_env() {
    let renderer = renderer();
    let text = "{{ not a template }} {{ .Secrets.sym }} {{";
    let value = ParameterValue {
        data: text.as_bytes().to_vec(),
        no_templates: true,
    };
    assert_eq!(
        renderer.render_file(&value).unwrap().as_bytes(),
        text.as_bytes()
    );
    assert_eq!(renderer.render_env(&value).unwrap().as_str(), text);

    // The object form with base64 data decodes first, then passes through.
    let value =
        ParameterValue::from_object(&STANDARD.encode("{{ raw x }}"), Encoding::Base64, true)
            .unwrap();
    assert_eq!(
        renderer.render_file(&value).unwrap().as_bytes(),
        b"{{ raw x }}"
    );
    // The same data with templates is parsed, and here refused.
    let templated = ParameterValue {
        no_templates: false,
        ..value
    };
    assert!(renderer.render_file(&templated).is_err());
}

#[test]
fn encoding_forms_feed_the_decoded_data_to_templates() {
    let renderer = renderer();
    let source = "k={{ hex .Secrets.plain }}";
    for (data, encoding) in [
        (source.to_owned(), Encoding::String),
        (STANDARD.encode(source), Encoding::Base64),
        (hex::encode_upper(source), Encoding::Hex),
    ] {
        let value = ParameterValue::from_object(&data, encoding, false).unwrap();
        assert_eq!(
            renderer.render_env(&value).unwrap().as_str(),
            format!("k={}", hex::encode("s3cr3t value")),
            "{encoding}"
        );
    }
}

#[test]
fn env_refuses_nul_bytes_even_without_templates() {
    let renderer = renderer();
    for no_templates in [false, true] {
        let value = ParameterValue {
            data: b"a\0b".to_vec(),
            no_templates,
        };
        assert_eq!(
            renderer.render_env(&value).unwrap_err(),
            RenderError::NulInEnv { offset: 1 }
        );
        // Files have no such rule.
        assert_eq!(renderer.render_file(&value).unwrap().as_bytes(), b"a\0b");
    }
}

#[test]
fn data_model_references_render() {
    let marble = marble_fixture();
    let cases: [(&str, Vec<u8>); 9] = [
        (
            "{{ hex .Previous.Secrets.sym }}",
            hex::encode("old").into_bytes(),
        ),
        (
            "{{ hex (index .Secrets \"dash-key\") }}",
            hex::encode("dash").into_bytes(),
        ),
        (
            "{{ pem .MarbleRun.MarbleCert.Private }}",
            go_pem("PRIVATE KEY", &marble.private),
        ),
        (
            "{{ pem .MarbleRun.MarbleCert.Cert }}",
            go_pem("CERTIFICATE", &marble.cert),
        ),
        (
            "{{ .MarbleRun.RootCA.Cert | pem }}",
            go_pem("CERTIFICATE", &[&[1][..], &marble.cert].concat()),
        ),
        (
            "{{ base64 .MarbleRun.CoordinatorRoot.Cert }}",
            STANDARD
                .encode([&[2][..], &marble.cert].concat())
                .into_bytes(),
        ),
        (
            "{{ base64 .MarbleRun.CoordinatorIntermediate.Cert }}",
            STANDARD
                .encode([&[3][..], &marble.cert].concat())
                .into_bytes(),
        ),
        (
            "{{ with $k := .Secrets.plain }}{{ printf \"K=%s;\" (hex $k.Private) }}{{ end }}",
            format!("K={};", hex::encode("s3cr3t value")).into_bytes(),
        ),
        (
            "{{ range $name, $s := .Secrets }}{{ if eq $name \"plain\" \"dash-key\" }}{{ $name }}={{ hex $s }} {{ end }}{{ end }}",
            format!(
                "dash-key={} plain={} ",
                hex::encode("dash"),
                hex::encode("s3cr3t value")
            )
            .into_bytes(),
        ),
    ];
    for (template, want) in cases {
        assert_eq!(render(Section::Env, template).unwrap(), want, "{template}");
    }
}

#[test]
fn len_measures_real_bytes() {
    let out = render(
        Section::Env,
        "{{ len .Secrets.sym.Private }} {{ len (hex .Secrets.plain) }}",
    );
    assert_eq!(out.unwrap(), b"256 24");
}

#[test]
fn bad_templates_are_refused_with_their_cause() {
    use RenderError as E;
    type Check = fn(&RenderError) -> bool;
    let cases: Vec<(Section, &str, Check)> = vec![
        (
            Section::Files,
            "{{ hex .Secrets.nope }}",
            |e| matches!(e, E::UnknownName { name } if name == "nope"),
        ),
        (Section::Env, "{{ .Secrets.nope }}", |e| {
            matches!(e, E::UnknownName { .. })
        }),
        (
            Section::Files,
            "{{ hex .Secrets.sym.Key }}",
            |e| matches!(e, E::UnknownName { name } if name == "Key"),
        ),
        (Section::Files, "{{ .Secrets.rsa.Cert.Subject }}", |e| {
            matches!(e, E::UnknownName { .. })
        }),
        (
            Section::Files,
            "{{ hex (index .Secrets \"nope\") }}",
            |e| matches!(e, E::UnknownName { name } if name == ".Secrets.nope"),
        ),
        (
            Section::Files,
            "{{ index .Previous.Secrets \"nope\" }}",
            |e| matches!(e, E::UnknownName { name } if name == ".Previous.Secrets.nope"),
        ),
        (
            Section::Files,
            "{{ hex (index .MarbleRun \"Nope\") }}",
            |e| matches!(e, E::UnknownName { .. }),
        ),
        (
            Section::Files,
            "{{ hex (index .Secrets.sym \"Cert\") }}",
            |e| matches!(e, E::SecretPassedToFunction { function: "index" }),
        ),
        (Section::Files, "{{ hex nil }}", |e| {
            matches!(e, E::MissingSecret { .. })
        }),
        (
            Section::Files,
            "{{ $m := .Secrets }}{{ hex (index $m \"nope\") }}",
            |e| matches!(e, E::UnknownName { .. }),
        ),
        (Section::Env, "{{ raw .Secrets.sym }}", |e| {
            matches!(
                e,
                E::EncoderNotAllowed {
                    encoder: Encoder::Raw,
                    section: Section::Env
                }
            )
        }),
        (
            Section::Env,
            "{{ if false }}{{ raw .Secrets.sym }}{{ end }}",
            |e| {
                matches!(
                    e,
                    E::EncoderNotAllowed {
                        encoder: Encoder::Raw,
                        ..
                    }
                )
            },
        ),
        (Section::Files, "{{ string .Secrets.plain }}", |e| {
            matches!(
                e,
                E::EncoderNotAllowed {
                    encoder: Encoder::String,
                    section: Section::Files
                }
            )
        }),
        (Section::Env, "{{ string .Secrets.sym }}", |e| {
            matches!(e, E::StringNeedsPlain { .. })
        }),
        (Section::Env, "{{ string .Secrets.rsa }}", |e| {
            matches!(e, E::StringNeedsPlain { .. })
        }),
        (Section::Env, "{{ string .Secrets.plainnul }}", |e| {
            matches!(e, E::NulInString { .. })
        }),
        (
            Section::Files,
            "{{ hex .Secrets.sym",
            |e| matches!(e, E::Syntax { message } if message.contains("unclosed action")),
        ),
        (Section::Files, "{{ hex .Secrets.sym }", |e| {
            matches!(e, E::Syntax { .. })
        }),
        (Section::Env, "{{ if true }}{{ hex .Secrets.sym }}", |e| {
            matches!(e, E::Syntax { .. })
        }),
        (Section::Env, "a\0b{{ hex .Secrets.sym }}", |e| {
            matches!(e, E::NulInEnv { offset: 1 })
        }),
        (
            Section::Env,
            "{{ .Secrets.sym }}",
            |e| matches!(e, E::BareReference { reference, .. } if reference.starts_with(".Secrets.sym.")),
        ),
        (
            Section::Files,
            "{{ .Secrets.rsa.Private }}",
            |e| matches!(e, E::BareReference { reference, .. } if reference == ".Secrets.rsa.Private"),
        ),
        (Section::Files, "{{ printf \"%v\" .MarbleRun }}", |e| {
            matches!(e, E::BareReference { .. })
        }),
        (
            Section::Files,
            "{{ print .Previous.Secrets.sym.Public }}",
            |e| matches!(e, E::BareReference { .. }),
        ),
        (Section::Files, "{{ pem .Secrets.sym }}", |e| {
            matches!(e, E::PemOfWholeSecret { .. })
        }),
        (Section::Files, "{{ pem .Secrets.sym.Cert }}", |e| {
            matches!(e, E::EmptyValue { .. })
        }),
        (
            Section::Env,
            "{{ pem .MarbleRun.RootCA.Private }}",
            |e| matches!(e, E::EmptyValue { reference } if reference == ".MarbleRun.RootCA.Private"),
        ),
        (Section::Files, "{{ hex \"literal\" }}", |e| {
            matches!(e, E::NotSecret { got: "string", .. })
        }),
        (Section::Files, "{{ hex .Secrets.sym .Secrets.sym }}", |e| {
            matches!(e, E::ArgumentCount { count: 2, .. })
        }),
        (Section::Files, "{{ frobnicate .Secrets.sym }}", |e| {
            matches!(e, E::UnknownFunction { .. })
        }),
        (
            Section::Files,
            "{{ if eq (hex .Secrets.sym) \"00\" }}x{{ end }}",
            |e| {
                matches!(
                    e,
                    E::EncoderResultUsed {
                        encoder: Encoder::Hex
                    }
                )
            },
        ),
        (
            Section::Files,
            "{{ printf \"%x\" (raw .Secrets.sym) }}",
            |e| matches!(e, E::SecretPassedToFunction { .. }),
        ),
        (
            Section::Files,
            "{{ printf \"%q\" (pem .Secrets.rsa.Cert) }}",
            |e| matches!(e, E::SecretPassedToFunction { .. }),
        ),
        (Section::Files, "{{ urlquery .Secrets.sym.Private }}", |e| {
            matches!(
                e,
                E::SecretPassedToFunction {
                    function: "urlquery"
                }
            )
        }),
        (Section::Files, "{{ js (base64 .Secrets.sym) }}", |e| {
            matches!(e, E::SecretPassedToFunction { .. })
        }),
        (Section::Files, "{{ slice (hex .Secrets.sym) 0 3 }}", |e| {
            matches!(e, E::EncoderResultAltered)
        }),
        (Section::Files, "{{ len .Secrets.sym }}", |e| {
            matches!(e, E::SecretPassedToFunction { function: "len" })
        }),
        (
            Section::Files,
            "x\u{F8F2}0\u{F8F3}{{ hex .Secrets.sym }}",
            |e| matches!(e, E::ReservedCharacter { codepoint: 0xF8F2 }),
        ),
        (Section::Files, "{{ range 200000 }}{{ end }}", |e| {
            matches!(e, E::Execution { .. })
        }),
        (
            Section::Files,
            "{{ range 20000 }}{{ hex $.Secrets.plain }}{{ end }}",
            |e| matches!(e, E::TooManyEncoderCalls { .. }),
        ),
        (Section::Env, "{{ string .Secrets.plainlatin }}", |e| {
            matches!(e, E::EnvNotUtf8 { offset: 1 })
        }),
    ];
    for (section, template, check) in cases {
        match render(section, template) {
            Ok(_) => panic!("{section} {template:?} rendered"),
            Err(error) => assert!(check(&error), "{section} {template:?}: {error:?}"),
        }
    }
}

#[test]
fn huge_output_is_refused() {
    let template = format!("{{{{ range 100000 }}}}{}{{{{ end }}}}", "x".repeat(1024));
    assert_eq!(
        render(Section::Files, &template).unwrap_err(),
        RenderError::OutputTooLarge {
            limit: MAX_RENDERED_BYTES
        }
    );
}

fn shapes() -> BTreeMap<String, SecretShape> {
    let shape = |secret_type, size, user_defined| SecretShape {
        secret_type,
        size,
        user_defined,
    };
    BTreeMap::from([
        (
            "key".to_owned(),
            shape(SecretType::SymmetricKey, 128, false),
        ),
        ("tls".to_owned(), shape(SecretType::CertEcdsa, 256, false)),
        ("rsa".to_owned(), shape(SecretType::CertRsa, 2048, false)),
        ("ed".to_owned(), shape(SecretType::CertEd25519, 0, true)),
        ("password".to_owned(), shape(SecretType::Plain, 0, true)),
        (
            "userkey".to_owned(),
            shape(SecretType::SymmetricKey, 256, true),
        ),
    ])
}

fn parameters(files: &[(&str, &str)], env: &[(&str, &str)]) -> Parameters {
    let map = |entries: &[(&str, &str)]| {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), ParameterValue::template(v)))
            .collect()
    };
    Parameters {
        files: map(files),
        env: map(env),
        argv: vec!["/bin/app".into(), "{{ not templated }}".into()],
    }
}

#[test]
fn dry_run_accepts_marbleruns_documented_forms() {
    let data = placeholder_data(&shapes()).unwrap();
    let web = parameters(
        &[
            ("/dev/attestation/keys/default", "{{ raw .Secrets.key }}"),
            (
                "/tls/cert.pem",
                "{{ pem .Secrets.tls.Cert }}{{ pem .MarbleRun.RootCA.Cert }}",
            ),
            ("/tls/key.pem", "{{ pem .Secrets.tls.Private }}"),
            ("/rsa.pub", "{{ pem .Secrets.rsa.Public }}"),
            ("/ed.pem", "{{ pem .Previous.Secrets.ed.Private }}"),
            ("/config", "static {{- /* comment */ -}} text"),
        ],
        &[
            ("KEY", "{{ hex .Secrets.key }}"),
            ("USER_KEY", "{{ base64 .Secrets.userkey }}"),
            ("PASSWORD", "{{ string .Secrets.password }}"),
            ("ROOT_CA", "{{ pem .MarbleRun.CoordinatorRoot.Cert }}"),
            ("MARBLE_KEY", "{{ pem .MarbleRun.MarbleCert.Private }}"),
        ],
    );
    dry_run([("web", &web)], &data).unwrap();

    // The placeholder of a 128-bit key is 16 bytes long.
    let renderer = Renderer::new(&data);
    let key = renderer
        .render_env(&ParameterValue::template("{{ len .Secrets.key.Private }}"))
        .unwrap();
    assert_eq!(key.as_str(), "16");
    let rendered = renderer
        .render_parameters(&web, &quarry_common::DocPath::root())
        .unwrap();
    assert_eq!(rendered.argv, web.argv);
}

#[test]
fn dry_run_reports_every_failing_template_with_its_path() {
    let data = placeholder_data(&shapes()).unwrap();
    let web = parameters(
        &[
            ("/ok", "{{ raw .Secrets.key }}"),
            ("/bad", "{{ .Secrets.key }}"),
        ],
        &[
            ("X", "{{ raw .Secrets.key }}"),
            ("Y", "{{ string .Secrets.userkey }}"),
        ],
    );
    let db = parameters(&[("/unterminated", "{{ hex .Secrets.key")], &[]);
    let errors = dry_run([("web", &web), ("db", &db)], &data).unwrap_err();
    let paths: Vec<String> = errors
        .problems()
        .iter()
        .map(|p| p.path.to_string())
        .collect();
    assert_eq!(
        paths,
        [
            r#"Marbles["web"].Parameters.Files["/bad"]"#,
            r#"Marbles["web"].Parameters.Env["X"]"#,
            r#"Marbles["web"].Parameters.Env["Y"]"#,
            r#"Marbles["db"].Parameters.Files["/unterminated"]"#,
        ]
    );
    let message = errors.to_string();
    assert!(message.starts_with("4 templates failed; "), "{message}");
    assert!(
        message
            .contains(r#"Marbles["web"].Parameters.Env["X"]: encoder raw is not allowed in Env"#),
        "{message}"
    );
}

#[test]
fn secret_upload_dry_run_uses_the_uploaded_value() {
    let mut data = placeholder_data(&shapes()).unwrap();
    let api = parameters(&[], &[("PASSWORD", "{{ string .Secrets.password }}")]);
    dry_run([("api", &api)], &data).unwrap();

    data.set_secret(
        "password",
        Secret::plain(SecretBytes::from_slice(b"pass\0word")),
    );
    let errors = dry_run([("api", &api)], &data).unwrap_err();
    assert!(matches!(
        errors.problems()[0].cause,
        RenderError::NulInString { .. }
    ));
}

/// Fragments of template syntax, so that generated text reaches deep into the parser and the
/// executor rather than failing at the first character.
fn template_text() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop_oneof![
        Just(&b"{{"[..]),
        Just(&b"}}"[..]),
        Just(&b"{{-"[..]),
        Just(&b" -}}"[..]),
        Just(&b" "[..]),
        Just(&b".Secrets"[..]),
        Just(&b".Previous"[..]),
        Just(&b".MarbleRun.RootCA"[..]),
        Just(&b".sym"[..]),
        Just(&b".rsa"[..]),
        Just(&b".plain"[..]),
        Just(&b".Cert"[..]),
        Just(&b".Private"[..]),
        Just(&b"pem "[..]),
        Just(&b"hex "[..]),
        Just(&b"raw "[..]),
        Just(&b"string "[..]),
        Just(&b"base64 "[..]),
        Just(&b"len "[..]),
        Just(&b"printf \"%q %s %x\" "[..]),
        Just(&b"index . \"Secrets\" "[..]),
        Just(&b"slice "[..]),
        Just(&b"("[..]),
        Just(&b")"[..]),
        Just(&b" | "[..]),
        Just(&b"$x := "[..]),
        Just(&b"$x"[..]),
        Just(&b"range "[..]),
        Just(&b"if "[..]),
        Just(&b"with "[..]),
        Just(&b"else"[..]),
        Just(&b"end"[..]),
        Just(&b"define \"t\""[..]),
        Just(&b"template \"t\" ."[..]),
        Just(&b"/* c */"[..]),
        Just(&b"\""[..]),
        Just(&b"0"[..]),
        Just(&b"\0"[..]),
        Just(&[0xff][..]),
        Just("\u{F8F2}".as_bytes()),
        Just("\u{F780}".as_bytes()),
    ];
    prop_oneof![
        prop::collection::vec(fragment, 0..24).prop_map(|parts| parts.concat()),
        prop::collection::vec(any::<u8>(), 0..64),
        ".{0,64}".prop_map(String::into_bytes),
    ]
}

proptest! {
    // 512 cases by default; PROPTEST_CASES runs more.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512)
    ))]

    #[test]
    fn rendering_arbitrary_text_never_panics(text in template_text()) {
        let files = render_bytes(Section::Files, &text);
        let env = render_bytes(Section::Env, &text);
        // Text without actions renders as itself (Env additionally wants UTF-8 without NUL).
        if !text.windows(2).any(|w| w == b"{{") {
            prop_assert_eq!(files.unwrap(), text.clone());
            if let Ok(env) = env {
                prop_assert_eq!(env, text);
            }
        }
    }
}

#[test]
fn adversarial_nesting_and_recursion_fail_cleanly() {
    let deep_parens = format!("{{{{ {}1{} }}}}", "(".repeat(5000), ")".repeat(5000));
    let deep_ifs = format!("{}x{}", "{{ if 1 }}".repeat(5000), "{{ end }}".repeat(5000));
    let recursive = r#"{{ define "t" }}{{ template "t" . }}{{ end }}{{ template "t" . }}"#;
    let wide_range = "{{ range $i := 100000 }}{{ range 100000 }}{{ end }}{{ end }}";
    for template in [deep_parens.as_str(), &deep_ifs, recursive, wide_range] {
        for section in [Section::Files, Section::Env] {
            let error = render(section, template).unwrap_err();
            assert!(
                matches!(
                    error,
                    RenderError::Syntax { .. } | RenderError::Execution { .. }
                ),
                "{error:?}"
            );
        }
    }
}

#[test]
fn reserved_characters_are_refused_where_they_would_be_ambiguous() {
    // A marker after a private-use character that is harmless in a UTF-8 template.
    let template = "\u{F780}\u{F8F0}{{ hex .Secrets.plain }}";
    assert_eq!(
        render(Section::Files, template).unwrap_err(),
        RenderError::ReservedCharacter { codepoint: 0xF8F0 }
    );
    // In a UTF-8 template, U+F780 is just text.
    let out = render(Section::Files, "\u{F780}{{ len .Secrets.plain.Cert }}").unwrap();
    assert_eq!(out, "\u{F780}0".as_bytes());
    // In a template that needs byte mapping, it would be ambiguous.
    let template = [&[0xff][..], "\u{F780}{{ 1 }}".as_bytes()].concat();
    assert_eq!(
        render_bytes(Section::Files, &template).unwrap_err(),
        RenderError::ReservedCharacter { codepoint: 0xF780 }
    );
}

#[test]
fn renderer_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Renderer>();
    assert_send_sync::<TemplateData>();
}

#[test]
fn error_messages_never_contain_secret_bytes() {
    let secret = "s3cr3t value";
    for template in [
        "{{ .Secrets.plain }}",
        "{{ printf \"%q\" (hex .Secrets.plain) }}",
        "{{ if eq (hex .Secrets.plain) \"x\" }}{{ end }}",
        "{{ string .Secrets.plain.Private }}",
        "{{ .Secrets.plain.Private.Nope }}",
        "{{ index .Secrets.plain.Private 0 }}",
    ] {
        let error = render(Section::Env, template).unwrap_err();
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(secret), "{template}: {shown}");
        assert!(!shown.contains(&hex::encode(secret)), "{template}: {shown}");
    }
}

#[test]
fn syntax_errors_name_line_and_column() {
    match render(Section::Files, "a\n{{ hex .Secrets.sym") {
        Err(RenderError::Syntax { message }) => {
            assert_eq!(message, "data:2:20: unclosed action")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn encoder_results_beyond_the_output_limit_are_not_held() {
    let big = Secret::plain(SecretBytes::new(vec![b'x'; 4 * 1024 * 1024]));
    let mut data = data().clone();
    data.set_secret("big", big);
    let renderer = Renderer::new(&data);
    let template = "{{ range 100 }}{{ hex $.Secrets.big }}{{ end }}";
    assert_eq!(
        renderer
            .render_file(&ParameterValue::template(template))
            .unwrap_err(),
        RenderError::OutputTooLarge {
            limit: MAX_RENDERED_BYTES
        }
    );
}
