//! Verifying the Coordinator before anything is sent to it, and pinning what was verified.
//!
//! [`attest`] fetches `/api/v2/quote` over a TLS connection that trusts nothing yet, then:
//!
//! 1. checks that the certificate the server presented is the root of the `cert` chain, and that
//!    the intermediate is signed by that root;
//! 2. verifies the quote with DCAP (`quarry-enclave`, collateral from `--collateral` or a PCCS)
//!    and applies `--accepted-tcb-statuses` / `--accepted-advisories`. A simulated quote (`null`,
//!    or a zero signature) is refused unless `--insecure-simulation` is given; the checks below
//!    still run on a simulated quote. A missing quote (`null`, as a MarbleRun Coordinator in
//!    simulation sends) passes none of them, so it is accepted only when nothing asks for them:
//!    no expected or pinned identity and no `--nonce`;
//! 3. checks that the report data starts with SHA-256 of the root certificate's DER followed by
//!    the nonce (`--nonce`);
//! 4. checks the enclave identity against `--era-config` (MarbleRun's `era-config.json`; with no
//!    flag, `./era-config.json` when it exists) and the identity flags, which override it. With
//!    neither, the identity pinned at first use is the expectation; `recover`, which pins
//!    nothing, is refused when there is no expectation at all;
//! 5. pins the root certificate (`--coordinator-cert`, PEM intermediate then root, as MarbleRun's
//!    `coordinator-cert.pem`) and the identity (the same path with `.identity.json` appended, in
//!    the era-config format). A different root or identity than the pinned one is exit 5 with
//!    what changed, unless `--trust-new-coordinator` accepts it.
//!
//! Later calls pin the root certificate exactly ([`crate::tls`]). `--insecure` skips all of this
//! and says so loudly.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use clap::Args;
use quarry_common::limits::MAX_BODY_BYTES;
use quarry_enclave::collateral::Collateral;
use quarry_enclave::pccs::{ENV_PCCS_CA_FILE, PccsClient};
use quarry_enclave::quote::Quote;
use quarry_enclave::verify::{Clock, FixedClock, SystemClock, TcbAcceptance, Verifier};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

use crate::client::{Address, Client, sha256_hex};
use crate::failure::{Failure, Result, read_file, write_file};
use crate::output::{Out, spinner};
use crate::tls::ClientIdentity;

/// How the CLI decides that it talks to a genuine Coordinator (MarbleRun's global flags, plus
/// Quarry's collateral and simulation flags).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Coordinator verification")]
pub struct ConnectOptions {
    /// Pinned Coordinator certificates (PEM: intermediate, then root).
    /// [default: $XDG_CONFIG_HOME/quarry/coordinator-cert.pem]
    #[arg(long, value_name = "FILE")]
    pub coordinator_cert: Option<PathBuf>,
    /// Expected Coordinator identity in MarbleRun's era-config.json format
    /// (UniqueID, SignerID, ProductID, SecurityVersion, Debug).
    #[arg(long, value_name = "FILE")]
    pub era_config: Option<PathBuf>,
    /// INSECURE: skip the quote check and the pinned certificate (TLS is not authenticated).
    #[arg(short = 'i', long)]
    pub insecure: bool,
    /// INSECURE: accept a Coordinator without SGX (simulated or missing quote); the binding and
    /// identity are still checked where a quote exists, and a missing quote is refused when an
    /// identity is expected or pinned or --nonce is given.
    #[arg(long)]
    pub insecure_simulation: bool,
    /// TCB statuses accepted besides UpToDate.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "UpToDate,SWHardeningNeeded"
    )]
    pub accepted_tcb_statuses: Vec<String>,
    /// Intel advisories accepted for SWHardeningNeeded (empty: all).
    #[arg(long, value_delimiter = ',')]
    pub accepted_advisories: Vec<String>,
    /// PCCS (API v4) to fetch the quote's collateral from.
    #[arg(long, value_name = "URL", env = "QUARRY_PCCS_URL")]
    pub pccs_url: Option<String>,
    /// Collateral file (JSON, as `quarry-enclave` writes it) instead of a PCCS.
    #[arg(long, value_name = "FILE")]
    pub collateral: Option<PathBuf>,
    /// Expected MRENCLAVE (hex); overrides the era config.
    #[arg(long, value_name = "HEX")]
    pub unique_id: Option<String>,
    /// Expected MRSIGNER (hex); overrides the era config.
    #[arg(long, value_name = "HEX")]
    pub signer_id: Option<String>,
    /// Expected ISVPRODID; overrides the era config.
    #[arg(long, value_name = "N")]
    pub product_id: Option<u16>,
    /// Lowest accepted ISVSVN; overrides the era config.
    #[arg(long, value_name = "N")]
    pub security_version: Option<u16>,
    /// Accept a debug enclave (era config `Debug`).
    #[arg(long)]
    pub accept_debug: bool,
    /// Nonce (its bytes as written) the quote must be made over.
    #[arg(long)]
    pub nonce: Option<String>,
    /// Save the quote the Coordinator sent to this file.
    #[arg(long, value_name = "FILE")]
    pub save_sgx_quote: Option<PathBuf>,
    /// Accept a verified Coordinator whose root certificate or identity differs from the
    /// pinned one, and pin the new ones.
    #[arg(long)]
    pub trust_new_coordinator: bool,
    /// INSECURE: verify the quote's collateral at this time (RFC 3339) instead of now, for
    /// audits with archived collateral.
    #[arg(long, value_name = "TIME", hide = true)]
    pub insecure_attestation_time: Option<String>,
}

/// Whether [`attest`] compares the root with the pinned one and pins it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinMode {
    /// Compare with the pin and pin (first use) — every command but `recover`.
    Pin,
    /// Check the identity only: a Coordinator in recovery mode serves a temporary root until
    /// the old one is recovered, so its root is neither compared nor pinned.
    IdentityOnly,
}

/// The expected enclave identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpectedIdentity {
    /// MRENCLAVE.
    pub unique_id: Option<[u8; 32]>,
    /// MRSIGNER.
    pub signer_id: Option<[u8; 32]>,
    /// ISVPRODID.
    pub product_id: Option<u16>,
    /// Lowest ISVSVN.
    pub security_version: Option<u16>,
    /// Whether a debug enclave is accepted.
    pub debug: bool,
}

/// What [`attest`] established.
#[derive(Debug, Clone)]
pub struct Attested {
    /// Root certificate DER.
    pub root_der: Vec<u8>,
    /// Intermediate certificate DER.
    pub intermediate_der: Vec<u8>,
    /// The quote bytes (Open Enclave header + SGX quote), when one was sent.
    pub quote: Option<Vec<u8>>,
}

impl ConnectOptions {
    /// The pin file.
    pub fn pin_path(&self) -> PathBuf {
        self.coordinator_cert
            .clone()
            .unwrap_or_else(|| config_dir().join("coordinator-cert.pem"))
    }

    fn identity_path(&self) -> PathBuf {
        let mut p = self.pin_path().into_os_string();
        p.push(".identity.json");
        PathBuf::from(p)
    }
}

/// `$XDG_CONFIG_HOME/quarry`, else `$HOME/.config/quarry`, else `./.quarry`.
pub fn config_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("quarry");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".config").join("quarry");
    }
    PathBuf::from(".quarry")
}

fn insecure_warning(out: &mut Out<'_>) {
    out.warn(
        "INSECURE: --insecure skips the Coordinator's attestation and certificate pinning; \
         anyone on the network path can impersonate it",
    );
}

/// A client pinned to the stored root certificate; attests first when nothing is pinned yet.
pub async fn pinned_client(
    opts: &ConnectOptions,
    address: &Address,
    user: Option<ClientIdentity>,
    out: &mut Out<'_>,
) -> Result<Client> {
    if opts.insecure {
        insecure_warning(out);
        return Client::unverified(address, user);
    }
    let root = match load_pin(&opts.pin_path())? {
        Some((_, root)) => root,
        None => attest(opts, address, PinMode::Pin, out).await?.root_der,
    };
    Client::pinned(address, root, user)
}

/// Attests the Coordinator (see the module documentation) and returns a client pinned to its
/// root certificate.
pub async fn attested_client(
    opts: &ConnectOptions,
    address: &Address,
    user: Option<ClientIdentity>,
    mode: PinMode,
    out: &mut Out<'_>,
) -> Result<(Client, Attested)> {
    let attested = attest(opts, address, mode, out).await?;
    let client = if opts.insecure {
        Client::unverified(address, user)?
    } else {
        Client::pinned(address, attested.root_der.clone(), user)?
    };
    Ok((client, attested))
}

/// Fetches and checks the quote; see the module documentation.
pub async fn attest(
    opts: &ConnectOptions,
    address: &Address,
    mode: PinMode,
    out: &mut Out<'_>,
) -> Result<Attested> {
    let (expected, pinned_identity) = if opts.insecure {
        (None, None)
    } else {
        (
            expected_identity(opts)?,
            load_identity(&opts.identity_path())?,
        )
    };
    let client = Client::unverified(address, None)?;
    let nonce = opts.nonce.as_deref().unwrap_or("").as_bytes().to_vec();
    let path = match &opts.nonce {
        Some(_) => format!(
            "/api/v2/quote?nonce={}",
            base64::engine::general_purpose::URL_SAFE.encode(&nonce)
        ),
        None => "/api/v2/quote".to_owned(),
    };
    let bar = spinner(&format!("fetching the quote of {address}"));
    let data = client.get(&path).await;
    bar.finish_and_clear();
    let data = data?;

    let (intermediate_der, root_der) = parse_chain(&data, address)?;
    let quote = field(&data, "quote")
        .filter(|q| !q.is_null())
        .map(|q| {
            q.as_str()
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                .ok_or_else(|| Failure::identity(format!("{address}: quote is not base64")))
        })
        .transpose()?;
    if let (Some(path), Some(q)) = (&opts.save_sgx_quote, &quote) {
        write_file(path, q, "quote file")?;
    }
    if opts.insecure {
        insecure_warning(out);
        return Ok(Attested {
            root_der,
            intermediate_der,
            quote,
        });
    }

    if client.presented_certificate().as_deref() != Some(root_der.as_slice()) {
        return Err(Failure::identity(format!(
            "{address} presented a TLS certificate other than the root certificate of its quote \
             response (a proxy or another server answers)"
        )));
    }
    check_intermediate(&intermediate_der, &root_der, address)?;

    let pin_source = format!("the identity pinned in {}", opts.identity_path().display());
    match &quote {
        None => {
            if !opts.insecure_simulation {
                return Err(Failure::identity(format!(
                    "{address} sent no quote: it runs without SGX; pass --insecure-simulation \
                     to accept a simulated coordinator"
                )));
            }
            let expectation = identity_expectation(
                mode,
                expected.as_ref(),
                pinned_identity.as_ref(),
                opts.trust_new_coordinator,
                &pin_source,
                address,
            )?;
            check_quoteless(opts, expectation.map(|(_, source)| source), address)?;
            out.warn(&format!(
                "INSECURE: {address} sent no quote; accepted because of --insecure-simulation \
                 (its identity and certificate binding are unchecked)"
            ));
        }
        Some(q) => {
            let parsed = Quote::parse(q).map_err(|e| {
                Failure::identity(format!("{address}: the quote does not parse: {e}"))
            })?;
            verify_quote(opts, q, &parsed, &expected, address, out).await?;
            check_binding(&parsed, &root_der, &nonce, address)?;
            let found = FoundIdentity::of(&parsed);
            let expectation = identity_expectation(
                mode,
                expected.as_ref(),
                pinned_identity.as_ref(),
                opts.trust_new_coordinator,
                &pin_source,
                address,
            )?;
            if let Some((e, source)) = expectation {
                check_identity(e, &found, source, address)?;
            }
            if expected.is_none() && mode == PinMode::Pin {
                if pinned_identity.is_none() {
                    out.note(&format!(
                        "pinned the coordinator's identity (first use, no --era-config): {}",
                        found.describe()
                    ));
                }
                let path = opts.identity_path();
                ensure_parent(&path)?;
                write_file(&path, found.era_json().as_bytes(), "identity pin")?;
            }
        }
    }

    if mode == PinMode::Pin {
        pin_root(opts, &intermediate_der, &root_der, out)?;
    }
    Ok(Attested {
        root_der,
        intermediate_der,
        quote,
    })
}

/// Whether a Coordinator that sent no quote may be accepted under `--insecure-simulation`: only
/// when nothing asked for a check that needs a quote. An expected or pinned identity
/// (`expectation` names it) and a `--nonce` each ask for one, and a missing quote can satisfy
/// neither, so it is an identity failure (exit 5) rather than a silent skip.
fn check_quoteless(
    opts: &ConnectOptions,
    expectation: Option<&str>,
    address: &Address,
) -> Result<()> {
    let unchecked = match (expectation, &opts.nonce) {
        (Some(source), _) => format!("{} cannot be checked", describe_expectation(opts, source)),
        (None, Some(nonce)) => format!("the nonce {nonce:?} cannot be bound to it"),
        (None, None) => return Ok(()),
    };
    let hint = if expectation.is_some_and(|s| s.starts_with("the identity pinned")) {
        "; if this coordinator replaced the pinned one, pass --trust-new-coordinator"
    } else {
        ""
    };
    Err(Failure::identity(format!(
        "{address} sent no quote, so {unchecked}; --insecure-simulation accepts a coordinator \
         without a quote only when no identity is expected or pinned and no --nonce is \
         given{hint}"
    )))
}

/// Where the expected identity comes from, for messages: `source` unless it is the expectation
/// from the command line or an era config ([`expected_identity`]), which is named precisely.
fn describe_expectation(opts: &ConnectOptions, source: &str) -> String {
    if source != "the expected identity" {
        return source.to_owned();
    }
    let mut from = Vec::new();
    match &opts.era_config {
        Some(path) => from.push(format!("--era-config {}", path.display())),
        None if opts.unique_id.is_none()
            && opts.signer_id.is_none()
            && Path::new("era-config.json").is_file() =>
        {
            from.push("./era-config.json".to_owned());
        }
        None => {}
    }
    let flags = [
        (opts.unique_id.is_some(), "--unique-id"),
        (opts.signer_id.is_some(), "--signer-id"),
        (opts.product_id.is_some(), "--product-id"),
        (opts.security_version.is_some(), "--security-version"),
    ];
    from.extend(
        flags
            .iter()
            .filter(|(set, _)| *set)
            .map(|(_, f)| (*f).to_owned()),
    );
    format!("the expected identity (from {})", from.join(", "))
}

/// A field of a JSON object, matched case-insensitively (Go's decoder, and v1's capitals).
pub fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    value
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn parse_chain(data: &Value, address: &Address) -> Result<(Vec<u8>, Vec<u8>)> {
    let pem = field(data, "cert").and_then(Value::as_str).unwrap_or("");
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Failure::identity(format!("{address}: the certificate chain: {e}")))?;
    match certs.as_slice() {
        [intermediate, root, ..] => Ok((intermediate.to_vec(), root.to_vec())),
        _ => Err(Failure::identity(format!(
            "{address}: the quote response holds {} certificates, expected intermediate and root",
            certs.len()
        ))),
    }
}

fn check_intermediate(intermediate: &[u8], root: &[u8], address: &Address) -> Result<()> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let bad = |what: String| Failure::identity(format!("{address}: {what}"));
    let (_, root_cert) =
        X509Certificate::from_der(root).map_err(|e| bad(format!("root certificate: {e}")))?;
    let (_, inter) = X509Certificate::from_der(intermediate)
        .map_err(|e| bad(format!("intermediate certificate: {e}")))?;
    inter
        .verify_signature(Some(root_cert.public_key()))
        .map_err(|_| bad("the intermediate certificate is not signed by the root".into()))
}

async fn verify_quote(
    opts: &ConnectOptions,
    bytes: &[u8],
    parsed: &Quote,
    expected: &Option<ExpectedIdentity>,
    address: &Address,
    out: &mut Out<'_>,
) -> Result<()> {
    let simulated = parsed.signature.ecdsa_signature.iter().all(|b| *b == 0);
    if simulated {
        if !opts.insecure_simulation {
            return Err(Failure::identity(format!(
                "{address} sent a simulated quote (zero signature): it runs without SGX; pass \
                 --insecure-simulation to accept a simulated coordinator"
            )));
        }
        out.warn(&format!(
            "INSECURE: {address} runs in simulation mode (no SGX); accepted because of \
             --insecure-simulation, binding and identity are still checked"
        ));
        return Ok(());
    }
    let clock: Arc<dyn Clock> = match &opts.insecure_attestation_time {
        Some(t) => {
            let at = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map_err(|e| Failure::invalid(format!("--insecure-attestation-time {t:?}: {e}")))?;
            out.warn(&format!(
                "INSECURE: verifying the quote's collateral at {t}, not now"
            ));
            Arc::new(FixedClock(at.unix_timestamp()))
        }
        None => Arc::new(SystemClock),
    };
    let collateral = collateral(opts, parsed, clock.clone()).await?;
    let debug = expected.as_ref().is_some_and(|e| e.debug);
    let bar = spinner("verifying the quote");
    let verified = Verifier::new(clock)
        .allow_debug(debug)
        .verify(bytes, &collateral);
    bar.finish_and_clear();
    let verified = verified.map_err(|e| {
        Failure::identity(format!(
            "{address}: quote verification failed: {}",
            crate::client::chain(&e)
        ))
    })?;
    TcbAcceptance::new(&opts.accepted_tcb_statuses, &opts.accepted_advisories)
        .check(verified.tcb_status, &verified.advisory_ids)
        .map_err(|e| Failure::identity(format!("{address}: {e}")))?;
    Ok(())
}

async fn collateral(
    opts: &ConnectOptions,
    parsed: &Quote,
    clock: Arc<dyn Clock>,
) -> Result<Collateral> {
    if let Some(path) = &opts.collateral {
        return Collateral::from_file(path).map_err(|e| {
            Failure::unreadable(format!(
                "collateral {}: {}",
                path.display(),
                crate::client::chain(&e)
            ))
        });
    }
    let Some(url) = opts.pccs_url.as_deref().filter(|u| !u.trim().is_empty()) else {
        return Err(Failure::invalid(
            "the quote needs collateral to verify: pass --pccs-url (or set QUARRY_PCCS_URL) or \
             --collateral FILE",
        ));
    };
    let roots = match std::env::var_os(ENV_PCCS_CA_FILE).filter(|p| !p.is_empty()) {
        Some(p) => Some(read_file(Path::new(&p), MAX_BODY_BYTES, "pccs ca file")?),
        None => None,
    };
    let client = PccsClient::new(url.trim(), roots.as_deref())
        .map_err(|e| Failure::invalid(format!("--pccs-url: {e}")))?
        .with_cache(config_dir().join("pccs-cache"))
        .with_clock(clock);
    let bar = spinner(&format!("fetching collateral from {url}"));
    let result = client.collateral_for_quote(parsed).await;
    bar.finish_and_clear();
    result.map_err(|e| {
        Failure::connection(format!(
            "collateral from {url}: {}",
            crate::client::chain(&e)
        ))
    })
}

fn check_binding(parsed: &Quote, root: &[u8], nonce: &[u8], address: &Address) -> Result<()> {
    let mut bound = root.to_vec();
    bound.extend_from_slice(nonce);
    let expected = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bound);
    if parsed.report_body.report_data[..32] != *expected.as_ref() {
        return Err(Failure::identity(format!(
            "{address}: the quote's report data {} is not SHA-256 of the root certificate{} ({})",
            hex::encode(&parsed.report_body.report_data[..32]),
            if nonce.is_empty() {
                ""
            } else {
                " and the nonce"
            },
            hex::encode(expected.as_ref()),
        )));
    }
    Ok(())
}

/// The identity a quote reports.
#[derive(Debug, Clone)]
struct FoundIdentity {
    unique_id: [u8; 32],
    signer_id: [u8; 32],
    product_id: u16,
    security_version: u16,
    debug: bool,
}

impl FoundIdentity {
    fn of(quote: &Quote) -> Self {
        let body = &quote.report_body;
        Self {
            unique_id: body.mr_enclave,
            signer_id: body.mr_signer,
            product_id: body.isv_prod_id,
            security_version: body.isv_svn,
            debug: body.attributes.is_debug(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "UniqueID {}, SignerID {}, ProductID {}, SecurityVersion {}, Debug {}",
            hex::encode(self.unique_id),
            hex::encode(self.signer_id),
            self.product_id,
            self.security_version,
            self.debug
        )
    }

    fn era_json(&self) -> String {
        let v = json!({
            "UniqueID": hex::encode(self.unique_id),
            "SignerID": hex::encode(self.signer_id),
            "ProductID": self.product_id,
            "SecurityVersion": self.security_version,
            "Debug": self.debug,
        });
        // A Value always serialises.
        serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
    }
}

/// The identity a quote is checked against, and how to name it: the expectation from flags or
/// `--era-config`, else the pinned identity (unless `--trust-new-coordinator`). Without either,
/// [`PinMode::Pin`] pins what it finds (first use), but [`PinMode::IdentityOnly`] — `recover`,
/// which hands over a recovery secret and pins nothing — is refused: any SGX enclave could
/// otherwise bind its own certificate and receive the secret.
fn identity_expectation<'a>(
    mode: PinMode,
    expected: Option<&'a ExpectedIdentity>,
    pinned: Option<&'a ExpectedIdentity>,
    trust_new_coordinator: bool,
    pin_source: &'a str,
    address: &Address,
) -> Result<Option<(&'a ExpectedIdentity, &'a str)>> {
    match (expected, pinned) {
        (Some(e), _) => Ok(Some((e, "the expected identity"))),
        (None, Some(p)) if !trust_new_coordinator => Ok(Some((p, pin_source))),
        _ if mode == PinMode::IdentityOnly => Err(Failure::invalid(format!(
            "{address}: no expected coordinator identity to check before sending a recovery \
             secret: pass --era-config or --unique-id / --signer-id, --product-id and \
             --security-version (a pinned identity counts unless --trust-new-coordinator)"
        ))),
        _ => Ok(None),
    }
}

fn check_identity(
    expected: &ExpectedIdentity,
    found: &FoundIdentity,
    source: &str,
    address: &Address,
) -> Result<()> {
    let mut changes = Vec::new();
    if let Some(u) = expected.unique_id.filter(|u| *u != found.unique_id) {
        changes.push(format!(
            "UniqueID is {}, expected {}",
            hex::encode(found.unique_id),
            hex::encode(u)
        ));
    }
    if let Some(s) = expected.signer_id.filter(|s| *s != found.signer_id) {
        changes.push(format!(
            "SignerID is {}, expected {}",
            hex::encode(found.signer_id),
            hex::encode(s)
        ));
    }
    if let Some(p) = expected.product_id.filter(|p| *p != found.product_id) {
        changes.push(format!("ProductID is {}, expected {p}", found.product_id));
    }
    if let Some(v) = expected
        .security_version
        .filter(|v| found.security_version < *v)
    {
        changes.push(format!(
            "SecurityVersion is {}, expected at least {v}",
            found.security_version
        ));
    }
    if found.debug && !expected.debug {
        changes.push("the enclave is a debug enclave, which is not accepted".into());
    }
    if changes.is_empty() {
        return Ok(());
    }
    Err(Failure::identity(format!(
        "{address} does not have {source}: {}",
        changes.join("; ")
    )))
}

/// The expectation from `--era-config` (or `./era-config.json`) and the identity flags; `None`
/// when neither says anything.
fn expected_identity(opts: &ConnectOptions) -> Result<Option<ExpectedIdentity>> {
    let era_path = opts.era_config.clone().or_else(|| {
        let local = PathBuf::from("era-config.json");
        (opts.unique_id.is_none() && opts.signer_id.is_none() && local.is_file()).then_some(local)
    });
    let mut id = match &era_path {
        Some(path) => parse_era_config(path)?,
        None => ExpectedIdentity::default(),
    };
    let flags_given = opts.unique_id.is_some()
        || opts.signer_id.is_some()
        || opts.product_id.is_some()
        || opts.security_version.is_some();
    if era_path.is_none() && !flags_given {
        return Ok(None);
    }
    if let Some(u) = &opts.unique_id {
        id.unique_id = Some(parse_measurement(u, "--unique-id")?);
    }
    if let Some(s) = &opts.signer_id {
        id.signer_id = Some(parse_measurement(s, "--signer-id")?);
    }
    if opts.product_id.is_some() {
        id.product_id = opts.product_id;
    }
    if opts.security_version.is_some() {
        id.security_version = opts.security_version;
    }
    id.debug |= opts.accept_debug;
    if id.unique_id.is_none()
        && (id.signer_id.is_none() || id.product_id.is_none() || id.security_version.is_none())
    {
        return Err(Failure::invalid(
            "an expected identity without UniqueID must set SignerID, ProductID and \
             SecurityVersion (--signer-id, --product-id, --security-version or --era-config)",
        ));
    }
    Ok(Some(id))
}

fn parse_measurement(text: &str, what: &str) -> Result<[u8; 32]> {
    let bytes = hex::decode(text.trim())
        .map_err(|e| Failure::invalid(format!("{what} {text:?} is not hex: {e}")))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        let n = crate::output::count(b.len() as u64, "byte", "bytes");
        Failure::invalid(format!("{what} has {n}, expected 32"))
    })
}

/// Reads MarbleRun's era-config.json (keys matched case-insensitively, as Go does).
pub fn parse_era_config(path: &Path) -> Result<ExpectedIdentity> {
    let bytes = read_file(path, MAX_BODY_BYTES, "era config")?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Failure::unreadable(format!("era config {}: {e}", path.display())))?;
    let bad = |what: &str| Failure::unreadable(format!("era config {}: {what}", path.display()));
    if !value.is_object() {
        return Err(bad("expected a JSON object"));
    }
    let hex_field = |name: &str| -> Result<Option<[u8; 32]>> {
        match field(&value, name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => parse_measurement(s, name)
                .map(Some)
                .map_err(|e| bad(&e.message)),
            Some(_) => Err(bad(&format!("{name} must be a hex string"))),
        }
    };
    let num_field = |name: &str| -> Result<Option<u16>> {
        match field(&value, name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .map(|n| (n != 0).then_some(n))
                .ok_or_else(|| bad(&format!("{name} must be a number from 0 to 65535"))),
        }
    };
    Ok(ExpectedIdentity {
        unique_id: hex_field("UniqueID")?,
        signer_id: hex_field("SignerID")?,
        product_id: num_field("ProductID")?,
        security_version: num_field("SecurityVersion")?,
        debug: field(&value, "Debug")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

fn load_identity(path: &Path) -> Result<Option<ExpectedIdentity>> {
    if !path.exists() {
        return Ok(None);
    }
    let mut id = parse_era_config(path)?;
    // A pinned identity pins every field, zero values included.
    let bytes = read_file(path, MAX_BODY_BYTES, "identity pin")?;
    if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
        let num = |n: &str| {
            field(&v, n)
                .and_then(Value::as_u64)
                .and_then(|x| u16::try_from(x).ok())
        };
        id.product_id = num("ProductID");
        id.security_version = num("SecurityVersion");
    }
    Ok(Some(id))
}

/// The pinned intermediate and root DER, if a pin file exists.
pub fn load_pin(path: &Path) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
    if !path.exists() {
        return Ok(None);
    }
    let bytes = read_file(path, MAX_BODY_BYTES, "pinned coordinator certificate")?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Failure::unreadable(format!("{}: {e}", path.display())))?;
    match certs.as_slice() {
        [intermediate, root, ..] => Ok(Some((intermediate.to_vec(), root.to_vec()))),
        [root] => Ok(Some((Vec::new(), root.to_vec()))),
        [] => Err(Failure::unreadable(format!(
            "{} holds no certificate",
            path.display()
        ))),
    }
}

fn pin_root(
    opts: &ConnectOptions,
    intermediate: &[u8],
    root: &[u8],
    out: &mut Out<'_>,
) -> Result<()> {
    let path = opts.pin_path();
    if let Some((_, pinned)) = load_pin(&path)?
        && pinned != root
    {
        let change = format!(
            "the coordinator's root certificate changed: pinned sha256:{} in {}, presented \
                 sha256:{}",
            sha256_hex(&pinned),
            path.display(),
            sha256_hex(root)
        );
        if !opts.trust_new_coordinator {
            return Err(Failure::identity(format!(
                "{change}; if the coordinator was reinstalled or given a new manifest in \
                     recovery mode, pass --trust-new-coordinator"
            )));
        }
        out.warn(&format!(
            "{change}; pinned the new one (--trust-new-coordinator)"
        ));
    }
    ensure_parent(&path)?;
    let pem = format!(
        "{}{}",
        quarry_pki::ca::certificate_pem(intermediate),
        quarry_pki::ca::certificate_pem(root)
    );
    write_file(&path, pem.as_bytes(), "pinned coordinator certificate")
}

fn ensure_parent(path: &Path) -> Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir)
            .map_err(|e| Failure::invalid(format!("cannot create {}: {e}", dir.display()))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quarry_common::ExitCode;

    fn found() -> FoundIdentity {
        FoundIdentity {
            unique_id: [1; 32],
            signer_id: [2; 32],
            product_id: 3,
            security_version: 4,
            debug: false,
        }
    }

    fn addr() -> Address {
        "127.0.0.1:4433".parse().unwrap()
    }

    #[test]
    fn recovery_without_an_identity_expectation_is_refused() {
        let id = ExpectedIdentity {
            unique_id: Some([1; 32]),
            ..Default::default()
        };
        let a = addr();
        let err =
            identity_expectation(PinMode::IdentityOnly, None, None, false, "pin", &a).unwrap_err();
        assert_eq!(err.code, ExitCode::Invalid);
        assert!(err.message.contains("--era-config"), "{}", err.message);
        // --trust-new-coordinator discards the pinned identity, so nothing is left to check.
        let err = identity_expectation(PinMode::IdentityOnly, None, Some(&id), true, "pin", &a)
            .unwrap_err();
        assert_eq!(err.code, ExitCode::Invalid);
        let (_, source) =
            identity_expectation(PinMode::IdentityOnly, None, Some(&id), false, "pin", &a)
                .unwrap()
                .unwrap();
        assert_eq!(source, "pin");
        let (_, source) =
            identity_expectation(PinMode::IdentityOnly, Some(&id), None, true, "pin", &a)
                .unwrap()
                .unwrap();
        assert_eq!(source, "the expected identity");
        // Other commands pin the identity found at first use.
        assert!(
            identity_expectation(PinMode::Pin, None, None, false, "pin", &a)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn identity_matches_with_higher_security_version() {
        let expected = ExpectedIdentity {
            signer_id: Some([2; 32]),
            product_id: Some(3),
            security_version: Some(3),
            ..Default::default()
        };
        assert!(check_identity(&expected, &found(), "x", &addr()).is_ok());
    }

    #[test]
    fn identity_mismatch_names_every_field() {
        let expected = ExpectedIdentity {
            unique_id: Some([9; 32]),
            signer_id: Some([8; 32]),
            product_id: Some(7),
            security_version: Some(5),
            debug: false,
        };
        let mut f = found();
        f.debug = true;
        let e = check_identity(&expected, &f, "the expected identity", &addr()).unwrap_err();
        assert_eq!(e.code, quarry_common::ExitCode::IdentityMismatch);
        for part in [
            "UniqueID is 0101",
            "SignerID is 0202",
            "ProductID is 3, expected 7",
            "SecurityVersion is 4, expected at least 5",
            "debug enclave",
        ] {
            assert!(e.message.contains(part), "{part}: {}", e.message);
        }
    }

    #[test]
    fn era_config_keys_match_case_insensitively_and_zero_means_unset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("era.json");
        std::fs::write(
            &path,
            format!(
                r#"{{"uniqueid":"","SIGNERID":"{}","ProductID":0,"SecurityVersion":3,"Debug":true}}"#,
                "ab".repeat(32)
            ),
        )
        .unwrap();
        let id = parse_era_config(&path).unwrap();
        assert_eq!(id.unique_id, None);
        assert_eq!(id.signer_id, Some([0xab; 32]));
        assert_eq!(id.product_id, None);
        assert_eq!(id.security_version, Some(3));
        assert!(id.debug);
    }

    #[test]
    fn era_config_with_a_short_measurement_is_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("era.json");
        std::fs::write(&path, r#"{"UniqueID":"abcd"}"#).unwrap();
        let e = parse_era_config(&path).unwrap_err();
        assert_eq!(e.code, quarry_common::ExitCode::Unreadable);
        assert!(
            e.message.contains("UniqueID has 2 bytes, expected 32"),
            "{}",
            e.message
        );
    }
}
