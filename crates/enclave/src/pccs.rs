//! Fetching DCAP collateral from a PCCS (Intel's Provisioning Certificate Caching Service, or
//! anything speaking its API v4, such as Azure's THIM cache or Intel's PCS), with a disk cache.
//!
//! For one quote four requests go to `{base}/sgx/certification/v4/`:
//! `pckcrl?ca=processor|platform&encoding=der`, `tcb?fmspc=…&update=standard`,
//! `qe/identity?update=standard` and `rootcacrl`. Issuer chains come percent-encoded in the
//! `SGX-PCK-CRL-Issuer-Chain`, `TCB-Info-Issuer-Chain` (or v3's `SGX-TCB-Info-Issuer-Chain`)
//! and `SGX-Enclave-Identity-Issuer-Chain` headers. A CRL may arrive as DER or as hex text
//! (Intel's PCCS without `encoding`, and its `rootcacrl`); both are accepted. The signed TCB
//! info and QE identity are cut out of the response body as the exact bytes received, never
//! re-serialised, because their signatures cover those bytes.
//!
//! The cache keeps one directory per FMSPC and PCK CA holding the raw responses (bodies as
//! received, decoded issuer chains) and the fetch time. An entry is used while it is younger
//! than the refresh age (24 hours by default) and valid at the clock's time; when a refresh
//! fails, an entry that is still valid is used instead. The cache is untrusted storage: every
//! signature is checked again when a quote is verified with what it returns.
//!
//! There is no fallback to Intel's CRL distribution point: only the configured PCCS is asked.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dcap_qvl::QuoteCollateralV3;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::collateral::{Collateral, CollateralError};
use crate::quote::{PckCa, Quote, QuoteError};
use crate::verify::{Clock, SystemClock};

/// `QUARRY_PCCS_URL`: the PCCS base URL, e.g. `https://localhost:8081/sgx/certification/v4/`.
pub const ENV_PCCS_URL: &str = "QUARRY_PCCS_URL";

/// `QUARRY_PCCS_CA_FILE`: PEM certificates trusted for the PCCS's TLS certificate in addition
/// to the system roots (a local PCCS usually has a self-signed certificate).
pub const ENV_PCCS_CA_FILE: &str = "QUARRY_PCCS_CA_FILE";

/// `QUARRY_COLLATERAL_FILE`: DCAP collateral as JSON in `dcap-qvl`'s shape, used for every
/// quote when no PCCS is configured.
pub const ENV_COLLATERAL_FILE: &str = "QUARRY_COLLATERAL_FILE";

/// How long a cached entry is used before it is refreshed.
pub const DEFAULT_REFRESH_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Timeout of one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest response body read.
const MAX_BODY: usize = 1024 * 1024;

/// Why collateral could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PccsError {
    /// The base URL is not an http(s) URL of API v4.
    #[error("invalid pccs url {url:?}: {detail}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// What is wrong.
        detail: &'static str,
    },
    /// The HTTP client could not be built (for example an unreadable CA file).
    #[error("pccs client: {0}")]
    Client(String),
    /// A request failed before a response arrived.
    #[error("request {url}")]
    Request {
        /// The URL.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The PCCS answered with an error status.
    #[error("{url} answered {status}: {body}")]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// A required issuer-chain header is missing or not decodable.
    #[error("{url}: header {header} {detail}")]
    Header {
        /// The URL.
        url: String,
        /// The header.
        header: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// A response body is not what the API defines.
    #[error("{url}: {detail}")]
    Body {
        /// The URL.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// The PCCS answered with collateral for another platform.
    #[error("pccs returned tcb info for fmspc {got}, asked for {asked}")]
    WrongFmspc {
        /// The FMSPC asked for.
        asked: String,
        /// The FMSPC received.
        got: String,
    },
    /// The quote does not name its platform.
    #[error("quote")]
    Quote(#[from] QuoteError),
    /// The assembled collateral is malformed.
    #[error("collateral")]
    Collateral(#[from] CollateralError),
    /// The cache directory could not be written.
    #[error("{op} {path}")]
    Cache {
        /// What was attempted.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The raw responses that make up one collateral set, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawCollateral {
    pck_crl: Vec<u8>,
    pck_crl_chain: String,
    tcb_body: Vec<u8>,
    tcb_chain: String,
    qe_body: Vec<u8>,
    qe_chain: String,
    root_crl: Vec<u8>,
}

/// A PCCS client with an optional disk cache. See the module documentation.
#[derive(Debug, Clone)]
pub struct PccsClient {
    base: String,
    http: reqwest::Client,
    cache: Option<PathBuf>,
    clock: Arc<dyn Clock>,
    refresh_age: Duration,
}

impl PccsClient {
    /// A client for `base_url` (with or without the `/sgx/certification/v4/` suffix), trusting
    /// the system roots plus the PEM certificates in `extra_roots_pem`.
    pub fn new(base_url: &str, extra_roots_pem: Option<&[u8]>) -> Result<Self, PccsError> {
        let base = normalise(base_url)?;
        let mut builder = reqwest::Client::builder().timeout(REQUEST_TIMEOUT);
        if let Some(pem) = extra_roots_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| PccsError::Client(format!("pccs ca certificates: {e}")))?;
            if certs.is_empty() {
                return Err(PccsError::Client(
                    "pccs ca file holds no certificate".into(),
                ));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| PccsError::Client(e.to_string()))?;
        Ok(Self {
            base,
            http,
            cache: None,
            clock: Arc::new(SystemClock),
            refresh_age: DEFAULT_REFRESH_AGE,
        })
    }

    /// The client `QUARRY_PCCS_URL` and `QUARRY_PCCS_CA_FILE` describe (looked up with `env`),
    /// or `None` when no URL is set.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>, PccsError> {
        let Some(url) = env(ENV_PCCS_URL).filter(|u| !u.trim().is_empty()) else {
            return Ok(None);
        };
        let roots =
            match env(ENV_PCCS_CA_FILE).filter(|p| !p.trim().is_empty()) {
                Some(path) => Some(fs::read(&path).map_err(|e| {
                    PccsError::Client(format!("read {ENV_PCCS_CA_FILE} {path}: {e}"))
                })?),
                None => None,
            };
        Self::new(url.trim(), roots.as_deref()).map(Some)
    }

    /// Caches collateral in `dir` (created when first written).
    pub fn with_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache = Some(dir.into());
        self
    }

    /// Uses `clock` to judge cached entries.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Refreshes cached entries older than `age`.
    pub fn with_refresh_age(mut self, age: Duration) -> Self {
        self.refresh_age = age;
        self
    }

    /// The base URL in use, without the API path.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The collateral for the platform and PCK CA named in `quote`'s certificate chain.
    pub async fn collateral_for_quote(&self, quote: &Quote) -> Result<Collateral, PccsError> {
        let chain = quote.pck_chain()?;
        self.collateral(chain.fmspc()?, chain.ca()?).await
    }

    /// The collateral for `fmspc` and `ca`, from the cache when fresh, else from the PCCS.
    pub async fn collateral(&self, fmspc: [u8; 6], ca: PckCa) -> Result<Collateral, PccsError> {
        let fmspc_hex = hex::encode_upper(fmspc);
        let now = self.clock.now();
        let entry = self
            .cache
            .as_ref()
            .map(|dir| dir.join(format!("{fmspc_hex}-{ca}")));
        let cached = entry.as_deref().and_then(|dir| load_entry(dir, &fmspc_hex));
        if let Some((collateral, fetched_at)) = &cached {
            let age = now.saturating_sub(*fetched_at);
            if u64::try_from(age).is_ok_and(|a| a < self.refresh_age.as_secs())
                && valid_at(collateral, now)
            {
                tracing::debug!(fmspc = %fmspc_hex, %ca, "collateral from cache");
                return Ok(collateral.clone());
            }
        }

        match self.fetch(&fmspc_hex, ca).await {
            Ok((raw, collateral)) => {
                if let Some(dir) = &entry
                    && let Err(e) = store_entry(dir, &raw, now)
                {
                    tracing::warn!(error = %e, "collateral cache not written");
                }
                Ok(collateral)
            }
            Err(e) => match cached {
                Some((collateral, _)) if valid_at(&collateral, now) => {
                    tracing::debug!(error = %e, fmspc = %fmspc_hex, "pccs failed, cached collateral still valid");
                    Ok(collateral)
                }
                _ => Err(e),
            },
        }
    }

    async fn fetch(
        &self,
        fmspc: &str,
        ca: PckCa,
    ) -> Result<(RawCollateral, Collateral), PccsError> {
        let api = format!("{}/sgx/certification/v4", self.base);
        let (pck_crl, pck_crl_chain) = self
            .get(
                &format!("{api}/pckcrl?ca={ca}&encoding=der"),
                &["SGX-PCK-CRL-Issuer-Chain"],
            )
            .await?;
        let (tcb_body, tcb_chain) = self
            .get(
                &format!("{api}/tcb?fmspc={fmspc}&update=standard"),
                &["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"],
            )
            .await?;
        let (qe_body, qe_chain) = self
            .get(
                &format!("{api}/qe/identity?update=standard"),
                &["SGX-Enclave-Identity-Issuer-Chain"],
            )
            .await?;
        let (root_crl, _) = self.get(&format!("{api}/rootcacrl"), &[]).await?;

        let raw = RawCollateral {
            pck_crl,
            pck_crl_chain,
            tcb_body,
            tcb_chain,
            qe_body,
            qe_chain,
            root_crl,
        };
        let collateral = assemble(&raw).map_err(|detail| PccsError::Body { url: api, detail })?;
        let got = collateral.fmspc()?;
        if got != fmspc {
            return Err(PccsError::WrongFmspc {
                asked: fmspc.to_owned(),
                got,
            });
        }
        Ok((raw, collateral))
    }

    /// GETs `url`; returns the body and the first of `chain_headers` percent-decoded (empty
    /// when none is asked for).
    async fn get(
        &self,
        url: &str,
        chain_headers: &[&'static str],
    ) -> Result<(Vec<u8>, String), PccsError> {
        let request_error = |source| PccsError::Request {
            url: url.to_owned(),
            source,
        };
        let response = self.http.get(url).send().await.map_err(request_error)?;
        let status = response.status();
        let chain_raw = chain_headers
            .iter()
            .find_map(|h| response.headers().get(*h))
            .map(|v| v.as_bytes().to_vec());
        // Read chunk by chunk so that a body over the limit is refused without being held
        // whole, whatever its Content-Length says.
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(request_error)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(PccsError::Body {
                    url: url.to_owned(),
                    detail: format!("response of more than {MAX_BODY} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(PccsError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
                body: text,
            });
        }
        let chain = match (chain_headers.first(), chain_raw) {
            (None, _) => String::new(),
            (Some(&header), None) => {
                return Err(PccsError::Header {
                    url: url.to_owned(),
                    header,
                    detail: "is missing".into(),
                });
            }
            (Some(&header), Some(raw)) => {
                percent_decode(&raw).map_err(|detail| PccsError::Header {
                    url: url.to_owned(),
                    header,
                    detail,
                })?
            }
        };
        Ok((body.to_vec(), chain))
    }
}

/// Where a verifier gets collateral: one fixed set (from a file) or a PCCS.
#[derive(Debug, Clone)]
pub enum CollateralSource {
    /// The same collateral for every quote; quotes of another platform fail verification
    /// with an FMSPC mismatch.
    Fixed(Collateral),
    /// Fetched per platform from a PCCS.
    Pccs(PccsClient),
}

/// Why the collateral source the environment describes could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollateralConfigError {
    /// `QUARRY_PCCS_URL` or `QUARRY_PCCS_CA_FILE` is unusable.
    #[error(transparent)]
    Pccs(#[from] PccsError),
    /// The file named by `QUARRY_COLLATERAL_FILE` is unusable.
    #[error("{ENV_COLLATERAL_FILE}: {0}")]
    File(#[from] CollateralError),
}

impl CollateralSource {
    /// The source the environment (looked up with `env`) configures: a PCCS
    /// (`QUARRY_PCCS_URL`, `QUARRY_PCCS_CA_FILE`) caching under `cache_dir`, else the collateral
    /// file `QUARRY_COLLATERAL_FILE`; `None` when neither is set.
    pub fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
        cache_dir: &Path,
    ) -> Result<Option<Self>, CollateralConfigError> {
        if let Some(client) = PccsClient::from_env(env)? {
            return Ok(Some(CollateralSource::Pccs(client.with_cache(cache_dir))));
        }
        match env(ENV_COLLATERAL_FILE).filter(|p| !p.trim().is_empty()) {
            Some(path) => Ok(Some(CollateralSource::Fixed(Collateral::from_file(
                Path::new(path.trim()),
            )?))),
            None => Ok(None),
        }
    }

    /// The collateral to verify `quote` with.
    pub async fn collateral_for(&self, quote: &Quote) -> Result<Collateral, PccsError> {
        match self {
            CollateralSource::Fixed(collateral) => Ok(collateral.clone()),
            CollateralSource::Pccs(client) => client.collateral_for_quote(quote).await,
        }
    }
}

/// Trims the URL to the service root: a trailing `/`, then `/sgx/certification/v4`.
fn normalise(url: &str) -> Result<String, PccsError> {
    let invalid = |detail| PccsError::InvalidUrl {
        url: url.to_owned(),
        detail,
    };
    let parsed = reqwest::Url::parse(url).map_err(|_| invalid("not a url"))?;
    if parsed.scheme() != "https" && parsed.scheme() != "http" {
        return Err(invalid("scheme must be https or http"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("must not have a query or fragment"));
    }
    let mut base = url.trim_end_matches('/');
    if let Some(stripped) = base.strip_suffix("/sgx/certification/v4") {
        base = stripped;
    }
    if base.contains("/certification/v3") {
        return Err(invalid("pccs api v3 is not supported, use the /v4/ url"));
    }
    if base.contains("/tdx/certification") {
        return Err(invalid("use the /sgx/certification/v4/ url"));
    }
    Ok(base.to_owned())
}

/// Plain percent-decoding (`+` stays `+`), to UTF-8 text.
fn percent_decode(raw: &[u8]) -> Result<String, String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = raw
                .get(i + 1..i + 3)
                .ok_or("ends inside a percent escape")?;
            let mut byte = [0u8; 1];
            hex::decode_to_slice(hex, &mut byte).map_err(|_| "has an invalid percent escape")?;
            out.push(byte[0]);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "is not utf-8 after decoding".to_owned())
}

/// A CRL as DER, from DER or from hex text of DER.
fn crl_bytes(body: &[u8], what: &str) -> Result<Vec<u8>, String> {
    if body.first() == Some(&0x30) {
        return Ok(body.to_vec());
    }
    let text = std::str::from_utf8(body).map_err(|_| format!("{what} is neither der nor hex"))?;
    hex::decode(text.trim()).map_err(|_| format!("{what} is neither der nor hex"))
}

#[derive(Deserialize)]
struct TcbResponse<'a> {
    #[serde(rename = "tcbInfo", borrow)]
    tcb_info: &'a RawValue,
    signature: String,
}

#[derive(Deserialize)]
struct QeResponse<'a> {
    #[serde(rename = "enclaveIdentity", borrow)]
    enclave_identity: &'a RawValue,
    signature: String,
}

/// Builds collateral from raw responses, keeping the signed JSON values byte for byte.
fn assemble(raw: &RawCollateral) -> Result<Collateral, String> {
    let tcb: TcbResponse<'_> =
        serde_json::from_slice(&raw.tcb_body).map_err(|e| format!("tcb info body: {e}"))?;
    let qe: QeResponse<'_> =
        serde_json::from_slice(&raw.qe_body).map_err(|e| format!("qe identity body: {e}"))?;
    let inner = QuoteCollateralV3 {
        pck_crl_issuer_chain: raw.pck_crl_chain.clone(),
        root_ca_crl: crl_bytes(&raw.root_crl, "root ca crl")?,
        pck_crl: crl_bytes(&raw.pck_crl, "pck crl")?,
        tcb_info_issuer_chain: raw.tcb_chain.clone(),
        tcb_info: tcb.tcb_info.get().to_owned(),
        tcb_info_signature: hex::decode(&tcb.signature)
            .map_err(|e| format!("tcb info signature: {e}"))?,
        qe_identity_issuer_chain: raw.qe_chain.clone(),
        qe_identity: qe.enclave_identity.get().to_owned(),
        qe_identity_signature: hex::decode(&qe.signature)
            .map_err(|e| format!("qe identity signature: {e}"))?,
        pck_certificate_chain: None,
    };
    let collateral = Collateral::from_dcap(inner);
    collateral.validity().map_err(|e| e.to_string())?;
    Ok(collateral)
}

fn valid_at(collateral: &Collateral, now: i64) -> bool {
    collateral
        .validity()
        .is_ok_and(|v| v.not_before <= now && now <= v.not_after)
}

const CACHE_FILES: [&str; 8] = [
    "pckcrl.der",
    "pckcrl.chain.pem",
    "tcb.json",
    "tcb.chain.pem",
    "qe-identity.json",
    "qe-identity.chain.pem",
    "rootcacrl",
    "fetched-at",
];

fn load_entry(dir: &Path, fmspc: &str) -> Option<(Collateral, i64)> {
    let read = |name: &str| fs::read(dir.join(name)).ok();
    let text = |name: &str| read(name).and_then(|b| String::from_utf8(b).ok());
    let raw = RawCollateral {
        pck_crl: read(CACHE_FILES[0])?,
        pck_crl_chain: text(CACHE_FILES[1])?,
        tcb_body: read(CACHE_FILES[2])?,
        tcb_chain: text(CACHE_FILES[3])?,
        qe_body: read(CACHE_FILES[4])?,
        qe_chain: text(CACHE_FILES[5])?,
        root_crl: read(CACHE_FILES[6])?,
    };
    let fetched_at = text(CACHE_FILES[7])?.trim().parse().ok()?;
    let collateral = assemble(&raw).ok()?;
    if collateral.fmspc().ok()? != fmspc {
        return None;
    }
    Some((collateral, fetched_at))
}

fn store_entry(dir: &Path, raw: &RawCollateral, now: i64) -> Result<(), PccsError> {
    fs::create_dir_all(dir).map_err(|e| PccsError::Cache {
        op: "create directory",
        path: dir.to_owned(),
        source: e,
    })?;
    let fetched_at = now.to_string();
    let contents: [&[u8]; 8] = [
        &raw.pck_crl,
        raw.pck_crl_chain.as_bytes(),
        &raw.tcb_body,
        raw.tcb_chain.as_bytes(),
        &raw.qe_body,
        raw.qe_chain.as_bytes(),
        &raw.root_crl,
        fetched_at.as_bytes(),
    ];
    // The fetch time goes last, so an entry interrupted half-way is either refreshed or, if
    // its parts do not fit together, fails verification and is fetched again.
    for (name, bytes) in CACHE_FILES.iter().zip(contents) {
        write_atomically(&dir.join(name), bytes)?;
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PccsError> {
    let cache_error = |op, source| PccsError::Cache {
        op,
        path: path.to_owned(),
        source,
    };
    // A temporary file of its own per writer: two verifications fetching the same FMSPC at once
    // must not write into each other's file.
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(|e| cache_error("create", e))?;
    file.write_all(bytes).map_err(|e| cache_error("write", e))?;
    file.as_file()
        .sync_all()
        .map_err(|e| cache_error("sync", e))?;
    file.persist(path)
        .map(drop)
        .map_err(|e| cache_error("rename", e.error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_base_urls() {
        for url in [
            "https://localhost:8081",
            "https://localhost:8081/",
            "https://localhost:8081/sgx/certification/v4/",
            "https://localhost:8081/sgx/certification/v4",
        ] {
            assert_eq!(normalise(url).unwrap(), "https://localhost:8081", "{url}");
        }
        assert_eq!(
            normalise("https://global.acccache.azure.net/sgx/certification/v4/").unwrap(),
            "https://global.acccache.azure.net"
        );
        let v3 = normalise("https://localhost:8081/sgx/certification/v3/").unwrap_err();
        assert!(v3.to_string().contains("v3 is not supported"), "{v3}");
        assert!(normalise("ftp://x").is_err());
        assert!(normalise("localhost:8081").is_err());
    }

    #[test]
    fn percent_decoding_keeps_plus() {
        assert_eq!(
            percent_decode(b"-----BEGIN%20CERTIFICATE-----%0Aab+c%2F").unwrap(),
            "-----BEGIN CERTIFICATE-----\nab+c/"
        );
        assert!(percent_decode(b"%4").is_err());
        assert!(percent_decode(b"%zz").is_err());
    }

    #[test]
    fn concurrent_cache_writers_never_mix_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tcb.json");
        // Each writer writes a body of one repeated byte; a shared temporary file would leave a
        // mixture (or a failed rename) behind.
        std::thread::scope(|scope| {
            for byte in 0u8..16 {
                let path = &path;
                scope.spawn(move || {
                    for _ in 0..20 {
                        write_atomically(path, &[byte; 64 * 1024]).unwrap();
                    }
                });
            }
        });
        let written = fs::read(&path).unwrap();
        assert_eq!(written.len(), 64 * 1024);
        assert!(
            written.iter().all(|b| *b == written[0]),
            "bytes of two writers mixed"
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(
            leftovers.len(),
            1,
            "temporary files left behind: {leftovers:?}"
        );
    }

    #[test]
    fn crl_accepts_der_and_hex() {
        assert_eq!(crl_bytes(&[0x30, 1], "x").unwrap(), [0x30, 1]);
        assert_eq!(crl_bytes(b"3001\n", "x").unwrap(), [0x30, 1]);
        assert!(crl_bytes(b"hello", "x").is_err());
    }
}
