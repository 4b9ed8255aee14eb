//! Marble activation end to end: `quarry-premain` against a running `quarry-coordinator`
//! (simulation), with a program that records what it received; and the refusals of bad
//! activation requests, sent with the premain's client over real TLS.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use quarry_marble_api::ActivationReq;
use quarry_premain::client::{ServerTrust, activate_once, client_config};
use quarry_premain::identity::MarbleIdentity;
use quarry_testkit::coordinator::Coordinator;
use serde_json::json;
use tonic::Code;

use crate::activation::{Client, SIGNER, simulated_quote};
use crate::tools::{Trust, b64, file, openssl};
use crate::workflow::set_manifest;

/// The identity the Marbles' simulated quotes carry (package `pkg`).
const SIM_ENV: [(&str, &str); 4] = [
    ("QUARRY_INSECURE_SIMULATION", "1"),
    ("QUARRY_INSECURE_SIM_MRSIGNER", SIGNER),
    ("QUARRY_INSECURE_SIM_ISVPRODID", "3"),
    ("QUARRY_INSECURE_SIM_ISVSVN", "2"),
];

/// Variables the recording program writes to files.
const RECORDED: [&str; 9] = [
    "SHARED_HEX",
    "UNIQUE_B64",
    "PLAIN",
    "ROOT_PEM",
    "OVERRIDDEN",
    "MARBLE_PREDEFINED_ROOT_CA",
    "MARBLE_PREDEFINED_MARBLE_CERTIFICATE_CHAIN",
    "MARBLE_PREDEFINED_PRIVATE_KEY",
    "MARBLE_PREDEFINED_COORDINATOR_ROOT_CA",
];

fn test_manifest() -> Vec<u8> {
    let manifest = json!({
        "Packages": {
            "pkg": {"SignerID": SIGNER, "ProductID": 3, "SecurityVersion": 2},
            "other": {"SignerID": "cd".repeat(32), "ProductID": 3, "SecurityVersion": 1}
        },
        "Marbles": {
            "app": {
                "Package": "pkg",
                "MaxActivations": 2,
                "Parameters": {
                    "Files": {
                        "out/shared.key": "{{ raw .Secrets.shared_key }}",
                        "out/unique.key": "{{ raw .Secrets.unique_key }}",
                        "out/previous.hex": "{{ hex .Previous.Secrets.unique_key }}",
                        "out/rsa.pem": "{{ pem .Secrets.rsa_cert.Cert }}{{ pem .Secrets.rsa_cert.Private }}",
                        "out/ecdsa.pem": "{{ pem .Secrets.ecdsa_cert.Cert }}",
                        "out/ecdsa.key.b64": "{{ base64 .Secrets.ecdsa_cert.Private }}",
                        "out/ed25519.der": "{{ raw .Secrets.ed_cert.Public }}",
                        "out/marble.pem": "{{ pem .MarbleRun.MarbleCert.Cert }}",
                        "out/static.bin": {"Data": "AAEC/w==", "Encoding": "base64", "NoTemplates": true},
                        "out/literal.txt": {"Data": "{{ not a template }}", "NoTemplates": true}
                    },
                    "Env": {
                        "SHARED_HEX": "{{ hex .Secrets.shared_key }}",
                        "UNIQUE_B64": "{{ base64 .Secrets.unique_key }}",
                        "PLAIN": "{{ string .Secrets.password }}",
                        "ROOT_PEM": "{{ pem .MarbleRun.CoordinatorRoot.Cert }}",
                        "MARBLE_PREDEFINED_ROOT_CA": "overridden by the coordinator",
                        "OVERRIDDEN": "from the manifest"
                    }
                }
            },
            "ttls": {"Package": "pkg", "TLS": ["web"]},
            "other": {"Package": "other"}
        },
        "Secrets": {
            "shared_key": {"Type": "symmetric-key", "Size": 256, "Shared": true},
            "unique_key": {"Type": "symmetric-key", "Size": 128},
            "rsa_cert": {"Type": "cert-rsa", "Size": 2048, "Cert": {"Subject": {"CommonName": "rsa"}}},
            "ecdsa_cert": {"Type": "cert-ecdsa", "Size": 256, "Shared": true},
            "ed_cert": {"Type": "cert-ed25519"},
            "password": {"Type": "plain", "UserDefined": true, "Private": b64(b"hunter2"), "Public": b64(b"hunter2")}
        },
        "TLS": {
            "web": {
                "Outgoing": [{"Port": "8080", "Addr": "service.name"}],
                "Incoming": [
                    {"Port": "8443"},
                    {"Port": "9443", "Cert": "ecdsa_cert", "DisableClientAuth": true}
                ]
            }
        }
    });
    serde_json::to_vec(&manifest).unwrap()
}

/// A Coordinator with the test manifest set.
fn coordinator(dir: &Path) -> Coordinator {
    let c = Coordinator::start(dir).unwrap();
    set_manifest(&c, &Trust::Insecure, dir, &test_manifest());
    c
}

/// The recording program: writes its arguments and the recorded variables into its cwd.
fn recorder(dir: &Path) -> PathBuf {
    let mut script = String::from("#!/bin/sh\nset -e\nprintf '%s\\n' \"$0\" \"$@\" > args.txt\n");
    for name in RECORDED {
        script.push_str(&format!("printf '%s' \"${name}\" > env_{name}\n"));
    }
    let path = file(dir, "record.sh", script);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Runs `quarry-premain PROGRAM first-arg` in `cwd` as Marble `marble_type`.
fn run_premain(addr: &str, cwd: &Path, marble_type: &str, program: &Path) -> std::process::Output {
    std::fs::create_dir_all(cwd).unwrap();
    let mut cmd = Command::new(quarry_testkit::process::binary("quarry-premain").unwrap());
    cmd.arg(program)
        .arg("first-arg")
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("EDG_MARBLE_TYPE", marble_type)
        .env("EDG_MARBLE_COORDINATOR_ADDR", addr)
        .env("QUARRY_PREMAIN_RETRY_TIMEOUT", "0");
    for (k, v) in SIM_ENV {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn text(dir: &Path, name: &str) -> String {
    String::from_utf8(read(dir, name)).unwrap()
}

#[test]
fn premain_delivers_every_secret_and_max_activations_stops_the_third() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = coordinator(dir);
    let program = recorder(dir);
    let addr = c.service().addr("marble_api").to_string();

    let one = dir.join("marble-one");
    let two = dir.join("marble-two");
    for cwd in [&one, &two] {
        let out = run_premain(&addr, cwd, "app", &program);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Argv: the manifest has none, so the premain's own arguments reach the program.
    assert_eq!(
        text(&one, "args.txt"),
        format!("{}\nfirst-arg\n", program.display())
    );

    // Shared secrets are equal across Marbles, unique ones differ.
    assert_eq!(read(&one, "out/shared.key").len(), 32);
    assert_eq!(read(&one, "out/shared.key"), read(&two, "out/shared.key"));
    assert_eq!(read(&one, "out/unique.key").len(), 16);
    assert_ne!(read(&one, "out/unique.key"), read(&two, "out/unique.key"));
    assert_eq!(read(&one, "out/ecdsa.pem"), read(&two, "out/ecdsa.pem"));
    assert_ne!(read(&one, "out/rsa.pem"), read(&two, "out/rsa.pem"));
    assert_ne!(read(&one, "out/ed25519.der"), read(&two, "out/ed25519.der"));
    // The previous root secret is the current one until a rotation.
    assert_eq!(
        text(&one, "out/previous.hex"),
        hex::encode(read(&one, "out/unique.key"))
    );

    // Every encoding.
    for cwd in [&one, &two] {
        assert_eq!(
            text(cwd, "env_SHARED_HEX"),
            hex::encode(read(cwd, "out/shared.key"))
        );
        assert_eq!(
            text(cwd, "env_UNIQUE_B64"),
            b64(&read(cwd, "out/unique.key"))
        );
        assert_eq!(text(cwd, "env_PLAIN"), "hunter2");
        assert_eq!(read(cwd, "out/static.bin"), [0, 1, 2, 255]);
        assert_eq!(text(cwd, "out/literal.txt"), "{{ not a template }}");
        assert_eq!(text(cwd, "env_OVERRIDDEN"), "from the manifest");
        let ecdsa_key = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            read(cwd, "out/ecdsa.key.b64"),
        )
        .unwrap();
        assert_eq!(ecdsa_key[0], 0x30, "PKCS#8 DER");
        assert_eq!(read(cwd, "out/ed25519.der").len(), 44, "Ed25519 PKIX DER");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cwd.join("out/shared.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let rsa = text(&one, "out/rsa.pem");
    assert!(
        rsa.contains("-----BEGIN CERTIFICATE-----") && rsa.contains("-----BEGIN PRIVATE KEY-----")
    );
    let rsa_file = one.join("out/rsa.pem");
    let modulus_cert = openssl(&[
        "x509",
        "-noout",
        "-modulus",
        "-in",
        rsa_file.to_str().unwrap(),
    ]);
    let modulus_key = openssl(&[
        "rsa",
        "-noout",
        "-modulus",
        "-in",
        rsa_file.to_str().unwrap(),
    ]);
    assert_eq!(
        modulus_cert, modulus_key,
        "the rsa key belongs to its certificate"
    );

    // The predefined variables and the certificate chain, checked with openssl.
    let root = text(&one, "env_MARBLE_PREDEFINED_COORDINATOR_ROOT_CA");
    assert_eq!(root, text(&one, "env_ROOT_PEM"));
    let marble_root = text(&one, "env_MARBLE_PREDEFINED_ROOT_CA");
    assert!(
        marble_root.starts_with("-----BEGIN CERTIFICATE-----"),
        "{marble_root}"
    );
    let chain = text(&one, "env_MARBLE_PREDEFINED_MARBLE_CERTIFICATE_CHAIN");
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    assert!(chain.starts_with(&text(&one, "out/marble.pem")));
    let root_file = file(dir, "root.pem", &root);
    let marble_root_file = file(dir, "marble-root.pem", &marble_root);
    let chain_file = file(dir, "chain.pem", &chain);
    let (chain_path, root_path, marble_root_path) = (
        chain_file.to_str().unwrap(),
        root_file.to_str().unwrap(),
        marble_root_file.to_str().unwrap(),
    );
    openssl(&["verify", "-CAfile", marble_root_path, chain_path]);
    openssl(&[
        "verify",
        "-CAfile",
        root_path,
        "-untrusted",
        chain_path,
        chain_path,
    ]);
    let ecdsa = one.join("out/ecdsa.pem");
    openssl(&[
        "verify",
        "-CAfile",
        marble_root_path,
        ecdsa.to_str().unwrap(),
    ]);

    // The certificate names the UUID from the UUID file and carries the marble type.
    let uuid = text(&one, "uuid");
    let subject =
        String::from_utf8(openssl(&["x509", "-noout", "-subject", "-in", chain_path])).unwrap();
    assert!(subject.contains(&format!("CN = {uuid}")), "{subject}");
    let details =
        String::from_utf8(openssl(&["x509", "-noout", "-text", "-in", chain_path])).unwrap();
    assert!(details.contains("1.3.9903.2.1:"), "{details}");
    // The private key belongs to the certificate.
    let key_file = file(
        dir,
        "marble.key",
        text(&one, "env_MARBLE_PREDEFINED_PRIVATE_KEY"),
    );
    let pub_from_key = openssl(&["pkey", "-in", key_file.to_str().unwrap(), "-pubout"]);
    let pub_from_cert = openssl(&["x509", "-noout", "-pubkey", "-in", chain_path]);
    assert_eq!(pub_from_key, pub_from_cert);

    // The third activation is refused and the program does not start.
    std::fs::remove_dir_all(one.join("out")).unwrap();
    let third = run_premain(&addr, &one, "app", &program);
    assert!(
        !third.status.success(),
        "the third activation of MaxActivations 2 must fail"
    );
    let stderr = String::from_utf8_lossy(&third.stderr);
    assert!(
        stderr.contains("PermissionDenied") && stderr.contains("maximum number of 2"),
        "{stderr}"
    );
    assert!(
        !one.join("out").exists(),
        "nothing is written after a refusal"
    );
    assert!(c.log().contains("marble activation refused"), "{}", c.log());

    // The counter is persisted: still exhausted after a restart.
    c.restart().unwrap();
    let addr = c.service().addr("marble_api").to_string();
    let again = run_premain(&addr, &dir.join("marble-four"), "app", &program);
    assert!(!again.status.success());
}

const UUID: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";

#[test]
fn bad_activations_get_the_documented_status_and_a_log_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = Coordinator::start(dir).unwrap();
    let client = Client::new(&mut c);
    let id = MarbleIdentity::generate(&["localhost".into()], &[]).unwrap();
    let good = simulated_quote(&id.report_data());

    // Before the manifest: not accepting Marbles.
    let err = client.send(&id, good.clone(), "ttls", UUID).unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    set_manifest(&c, &Trust::Insecure, dir, &test_manifest());

    // (what, quote, marble type, uuid, expected code, expected message part)
    type Case<'a> = (&'a str, Vec<u8>, &'a str, &'a str, Code, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "unknown type",
            good.clone(),
            "nope",
            UUID,
            Code::PermissionDenied,
            "unknown marble type",
        ),
        (
            "other package",
            good.clone(),
            "other",
            UUID,
            Code::PermissionDenied,
            "SignerID",
        ),
        (
            "not bound",
            simulated_quote(&[7; 64]),
            "ttls",
            UUID,
            Code::PermissionDenied,
            "not bound to the tls client certificate",
        ),
        (
            "garbage quote",
            vec![1, 2, 3],
            "ttls",
            UUID,
            Code::PermissionDenied,
            "invalid quote",
        ),
        (
            "malformed uuid",
            good.clone(),
            "ttls",
            "not-a-uuid",
            Code::InvalidArgument,
            "invalid UUID",
        ),
        (
            "nil uuid",
            good.clone(),
            "ttls",
            "00000000-0000-0000-0000-000000000000",
            Code::InvalidArgument,
            "nil UUID",
        ),
        (
            "line break in the type",
            good.clone(),
            "nope\nFORGED marble activated",
            UUID,
            Code::PermissionDenied,
            "unknown marble type",
        ),
        (
            "line break in the uuid",
            good.clone(),
            "ttls",
            "x\nFORGED marble activated",
            Code::InvalidArgument,
            "invalid UUID",
        ),
    ];
    for (what, quote, marble_type, uuid, code, message) in cases {
        let err = client.send(&id, quote, marble_type, uuid).unwrap_err();
        assert_eq!(err.code(), code, "{what}: {err:?}");
        assert!(err.message().contains(message), "{what}: {}", err.message());
    }
    let log = c.log();
    assert_eq!(log.matches("marble activation refused").count(), 9, "{log}");
    assert!(log.contains("unknown marble type requested"), "{log}");
    // What an unauthenticated client sends cannot start a log line of its own.
    assert!(
        !log.lines().any(|line| line.starts_with("FORGED")),
        "a forged log line: {log}"
    );

    // A quote made for another certificate does not work with this one.
    let other = MarbleIdentity::generate(&["localhost".into()], &[]).unwrap();
    let err = client.send(&other, good.clone(), "ttls", UUID).unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // The Coordinator keeps serving: a good activation, with the TTLS configuration.
    let params = client
        .send(&id, good, "ttls", &UUID.to_uppercase())
        .unwrap();
    let ttls: serde_json::Value =
        serde_json::from_slice(&params.env["MARBLE_TTLS_CONFIG"]).unwrap();
    let marble_root = String::from_utf8(params.env["MARBLE_PREDEFINED_ROOT_CA"].clone()).unwrap();
    let outgoing = &ttls["tls"]["Outgoing"]["service.name:8080"];
    assert_eq!(outgoing["cacrt"], marble_root.as_str());
    assert!(outgoing.get("clientAuth").is_none());
    let incoming = &ttls["tls"]["Incoming"]["*:8443"];
    assert_eq!(incoming["clientAuth"], true);
    let chain = String::from_utf8(params.env["MARBLE_PREDEFINED_MARBLE_CERTIFICATE_CHAIN"].clone())
        .unwrap();
    assert!(chain.starts_with(incoming["clicrt"].as_str().unwrap()));
    let key = String::from_utf8(params.env["MARBLE_PREDEFINED_PRIVATE_KEY"].clone()).unwrap();
    assert_eq!(incoming["clikey"], key.as_str());
    // An incoming entry with a secret's certificate serves that certificate and key.
    let custom = &ttls["tls"]["Incoming"]["*:9443"];
    assert_eq!(custom["clientAuth"], false);
    let custom_cert = custom["clicrt"].as_str().unwrap();
    assert!(custom_cert.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_ne!(custom_cert, incoming["clicrt"].as_str().unwrap());
    assert!(
        custom["clikey"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    // Keys in Go's order.
    let raw = String::from_utf8(params.env["MARBLE_TTLS_CONFIG"].clone()).unwrap();
    assert!(
        raw.starts_with("{\"tls\":{\"Incoming\":{\"*:8443\":{\"cacrt\":"),
        "{raw}"
    );
    assert!(raw.find("\"clicrt\"") < raw.find("\"clientAuth\""));

    // An empty quote is accepted by a Coordinator in simulation, with a warning.
    client.send(&id, Vec::new(), "ttls", UUID).unwrap();
    assert!(c.log().contains("accepting a marble with an empty quote"));
}

#[test]
fn premain_verifies_a_pinned_coordinator_root() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = coordinator(dir);
    let client = Client::new(&mut c);
    let id = MarbleIdentity::generate(&["localhost".into()], &[]).unwrap();
    let quote = simulated_quote(&id.report_data());

    // The Coordinator root, as the quote endpoint returns it after the intermediate.
    let answer = crate::tools::curl(&Trust::Insecure, "GET", &c.url("/api/v2/quote"), None, &[]);
    let chain = answer.data()["cert"].as_str().unwrap().to_owned();
    let root = &chain[chain.rfind("-----BEGIN CERTIFICATE-----").unwrap()..];
    let root_file = file(dir, "pinned-root.pem", root);
    let pinned = ServerTrust::from_pem_file(&root_file).unwrap();
    let request = |trust: &ServerTrust| {
        let tls = Arc::new(client_config(&id, trust).unwrap());
        let request = ActivationReq {
            quote: quote.clone(),
            csr: id.csr_der().to_vec(),
            marble_type: "ttls".into(),
            uuid: UUID.into(),
        };
        client
            .runtime
            .block_on(activate_once(&client.addr, tls, request))
    };
    request(&pinned).unwrap();

    // Another Coordinator's root is refused before anything is sent.
    let other_dir = dir.join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = Coordinator::start(&other_dir).unwrap();
    let answer = crate::tools::curl(
        &Trust::Insecure,
        "GET",
        &other.url("/api/v2/quote"),
        None,
        &[],
    );
    let chain = answer.data()["cert"].as_str().unwrap().to_owned();
    let other_root = &chain[chain.rfind("-----BEGIN CERTIFICATE-----").unwrap()..];
    let wrong = ServerTrust::from_pem_file(&file(dir, "wrong-root.pem", other_root)).unwrap();
    let err = request(&wrong).unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
}

#[test]
fn premain_waits_for_the_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = Coordinator::start(dir).unwrap();
    let program = recorder(dir);
    let addr = c.service().addr("marble_api").to_string();
    let cwd = dir.join("early");
    std::fs::create_dir_all(&cwd).unwrap();
    let mut cmd = Command::new(quarry_testkit::process::binary("quarry-premain").unwrap());
    cmd.arg(&program)
        .current_dir(&cwd)
        .env("EDG_MARBLE_TYPE", "app")
        .env("EDG_MARBLE_COORDINATOR_ADDR", &addr)
        .env("QUARRY_PREMAIN_RETRY_TIMEOUT", "600")
        .stderr(std::process::Stdio::piped());
    for (k, v) in SIM_ENV {
        cmd.env(k, v);
    }
    let premain = cmd.spawn().unwrap();

    // Wait until the Coordinator has refused it for being in state 2 (the premain retries).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !c.log().contains("FailedPrecondition") {
        assert!(
            std::time::Instant::now() < deadline,
            "the premain never asked: {}",
            c.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    set_manifest(&c, &Trust::Insecure, dir, &test_manifest());
    let out = premain.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("coordinator not ready, retrying"),
        "{stderr}"
    );
    assert_eq!(read(&cwd, "out/shared.key").len(), 32);
}
